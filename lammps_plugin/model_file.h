/* Reading a model file for every MPI rank of a LAMMPS run. */
#ifndef EFGMD_MODEL_FILE_H
#define EFGMD_MODEL_FILE_H

#include <string>

namespace LAMMPS_NS {
class LAMMPS;
}

namespace efgmd {

struct ModelFile {
  std::string path;     // the file found (as given, or in a LAMMPS_POTENTIALS directory)
  std::string bytes;    // its contents
};

// Model file `name`, found as LAMMPS finds potential files (utils::get_potential_file_path: the
// name as given, else in the directories of the LAMMPS_POTENTIALS environment variable), read on
// rank 0 only and broadcast to every rank (one reader instead of all ranks hitting a shared file
// system at once). Throws std::runtime_error with the same message on every rank when rank 0
// cannot find or read it, so that the caller's error->all() is collective.
ModelFile broadcast_model_file(LAMMPS_NS::LAMMPS *lmp, const std::string &name);

}    // namespace efgmd

#endif
