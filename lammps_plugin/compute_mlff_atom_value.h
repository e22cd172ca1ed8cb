/* Base of the computes that report a per-atom value which pair_style mlff computes with its
   forces (compute mlff/uncertainty, compute mlff/grade): per-atom vector (owned atoms of the
   group, 0 elsewhere) and global scalar (maximum over the group on all ranks). */
#ifndef EFGMD_COMPUTE_MLFF_ATOM_VALUE_H
#define EFGMD_COMPUTE_MLFF_ATOM_VALUE_H

#include "compute.h"

#include <string>

namespace LAMMPS_NS {

class ComputeMLFFAtomValue : public Compute {
 public:
  // `style`: the compute's style name, for messages.
  ComputeMLFFAtomValue(class LAMMPS *, int, char **, const std::string &style);
  ~ComputeMLFFAtomValue() override;

  void init() override;
  double compute_scalar() override;
  void compute_peratom() override;
  double memory_usage() override;

 protected:
  // What the model of the pair style must provide: error->all() if it does not.
  virtual void check_model() = 0;
  // The value of each owned atom (LAMMPS index) and the timestep it belongs to.
  virtual const double *pair_values() const = 0;
  virtual bigint pair_values_step() const = 0;
  // Why the pair style may not have computed the value on a step, for the error message.
  virtual std::string when_computed() const = 0;

  std::string style;
  class PairMLFF *pair;

 private:
  void check_current();

  int nmax;
  double *value_atom;    // (nmax): the value of owned atoms in the group, 0 elsewhere
};

}    // namespace LAMMPS_NS

#endif
