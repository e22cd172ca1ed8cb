#include "model_file.h"

#include "comm.h"
#include "lammps.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>

using namespace LAMMPS_NS;

namespace {

// MPI counts are int: broadcast long strings in pieces.
void broadcast_string(std::string &text, int64_t size, MPI_Comm world)
{
  text.resize(size);
  constexpr int64_t kChunk = 1 << 30;
  for (int64_t offset = 0; offset < size; offset += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, size - offset));
    MPI_Bcast(&text[offset], count, MPI_CHAR, 0, world);
  }
}

}    // namespace

efgmd::ModelFile efgmd::broadcast_model_file(LAMMPS *lmp, const std::string &name)
{
  ModelFile file;
  std::string problem;
  if (lmp->comm->me == 0) {
    file.path = utils::get_potential_file_path(name);
    if (file.path.empty()) {
      problem = "cannot open model file " + name + " (not found as given nor in LAMMPS_POTENTIALS)";
    } else {
      std::ifstream in(file.path, std::ios::binary);
      file.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) problem = "cannot read model file " + file.path;
    }
  }
  // sizes first (path, bytes, problem), then the strings
  int64_t sizes[3] = {static_cast<int64_t>(file.path.size()), static_cast<int64_t>(file.bytes.size()),
                      static_cast<int64_t>(problem.size())};
  MPI_Bcast(sizes, 3, MPI_INT64_T, 0, lmp->world);
  broadcast_string(problem, sizes[2], lmp->world);
  if (!problem.empty()) throw std::runtime_error(problem);
  broadcast_string(file.path, sizes[0], lmp->world);
  broadcast_string(file.bytes, sizes[1], lmp->world);
  return file;
}
