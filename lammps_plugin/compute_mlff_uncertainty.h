/* compute mlff/uncertainty: per-atom force uncertainty of a committee model of pair_style mlff. */
#ifndef EFGMD_COMPUTE_MLFF_UNCERTAINTY_H
#define EFGMD_COMPUTE_MLFF_UNCERTAINTY_H

#include "compute_mlff_atom_value.h"

namespace LAMMPS_NS {

class ComputeMLFFUncertainty : public ComputeMLFFAtomValue {
 public:
  ComputeMLFFUncertainty(class LAMMPS *, int, char **);

 protected:
  void check_model() override;
  const double *pair_values() const override;
  bigint pair_values_step() const override;
  std::string when_computed() const override;
};

}    // namespace LAMMPS_NS

#endif
