/* compute mlff/uncertainty: per-atom force uncertainty of a committee model of pair_style mlff. */
#ifndef EFGMD_COMPUTE_MLFF_UNCERTAINTY_H
#define EFGMD_COMPUTE_MLFF_UNCERTAINTY_H

#include "compute.h"

namespace LAMMPS_NS {

class ComputeMLFFUncertainty : public Compute {
 public:
  ComputeMLFFUncertainty(class LAMMPS *, int, char **);
  ~ComputeMLFFUncertainty() override;

  void init() override;
  double compute_scalar() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  void check_current();

  class PairMLFF *pair;
  int nmax;
  double *sigma_atom;    // (nmax): sigma_i of owned atoms in the group, 0 elsewhere, eV/A
};

}    // namespace LAMMPS_NS

#endif
