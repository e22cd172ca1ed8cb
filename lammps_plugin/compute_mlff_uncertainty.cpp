/* compute ID group mlff/uncertainty

   The force uncertainty of a committee potential of pair_style mlff (a model exported by
   `pyexport committee fit`, attribute committee_size = K): per owned atom the deviation of the
   members' forces, sigma_i = sqrt(mean_k |F_k,i - mean_k F_k,i|^2) in eV/A (DeePMD's model
   deviation), which pair_style mlff computes with the forces; as a global scalar the maximum of
   sigma_i over the atoms of the group on all ranks. Atoms outside the group get 0.

   The values belong to the step on which the pair style last computed forces: every MD step,
   so thermo output, `variable ... equal c_ID` with `fix halt`, and `dump` on MD steps are
   current; using the compute on any other step is an error. */

#include "compute_mlff_uncertainty.h"

#include "pair_mlff.h"

#include "error.h"

using namespace LAMMPS_NS;

ComputeMLFFUncertainty::ComputeMLFFUncertainty(LAMMPS *lmp, int narg, char **arg) :
    ComputeMLFFAtomValue(lmp, narg, arg, "mlff/uncertainty")
{
}

void ComputeMLFFUncertainty::check_model()
{
  if (pair->committee_size() < 2)
    error->all(FLERR, "compute mlff/uncertainty: the model {} of pair_style mlff is not a committee "
               "(it has no committee_size attribute); fit one with `pyexport committee fit`",
               pair->model_path());
}

const double *ComputeMLFFUncertainty::pair_values() const
{
  return pair->force_uncertainty();
}

bigint ComputeMLFFUncertainty::pair_values_step() const
{
  return pair->force_uncertainty_step();
}

std::string ComputeMLFFUncertainty::when_computed() const
{
  return "the uncertainty exists only on steps where the pair style was evaluated";
}
