/* compute efg/atom: per-atom electric field gradient from an efgmd EFG model, in situ. */
#ifndef EFGMD_COMPUTE_EFG_ATOM_H
#define EFGMD_COMPUTE_EFG_ATOM_H

#include "compute.h"

#include <memory>
#include <string>
#include <vector>

namespace efgmd {
class MLFFModel;
class ContractGraph;
}    // namespace efgmd

namespace LAMMPS_NS {

class ComputeEFGAtom : public Compute {
 public:
  ComputeEFGAtom(class LAMMPS *, int, char **);
  ~ComputeEFGAtom() override;

  void init() override;
  void init_list(int, class NeighList *) override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  int nmax;
  double **efg;    // (nmax, 6): V_xx V_yy V_zz V_xy V_xz V_yz, V/A^2
  class NeighList *list;
  std::unique_ptr<efgmd::MLFFModel> model;
  std::unique_ptr<efgmd::ContractGraph> graph;
  std::vector<int> type_to_species;
};

}    // namespace LAMMPS_NS

#endif
