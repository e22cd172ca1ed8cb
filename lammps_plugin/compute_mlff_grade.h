/* compute mlff/grade: per-atom extrapolation grade of the model of pair_style mlff. */
#ifndef EFGMD_COMPUTE_MLFF_GRADE_H
#define EFGMD_COMPUTE_MLFF_GRADE_H

#include "compute.h"

namespace LAMMPS_NS {

class ComputeMLFFGrade : public Compute {
 public:
  ComputeMLFFGrade(class LAMMPS *, int, char **);
  ~ComputeMLFFGrade() override;

  void init() override;
  double compute_scalar() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  void check_current();

  class PairMLFF *pair;
  int nmax;
  double *grade_atom;    // (nmax): gamma_i of owned atoms in the group, 0 elsewhere
};

}    // namespace LAMMPS_NS

#endif
