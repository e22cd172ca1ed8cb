/* compute ID group mlff/grade

   The extrapolation grade of the potential of pair_style mlff (a cluster or cluster-nn model
   exported with its active set, attribute active_set_size > 0): per owned atom gamma_i
   (dimensionless; <= 1 inside the active set of the training data, 1-2 mild extrapolation,
   >> 2 an environment the fit never saw), and as a global scalar the maximum of gamma_i over the
   atoms of the group on all ranks. Atoms outside the group get 0. See doc/compute_mlff_grade.rst.

   The grade costs a share of the model's time, so it is computed only on the steps this compute
   is invoked on. LAMMPS knows those steps ahead (thermo, dump, fix halt, fix print register
   them), and, because the compute has peatomflag set like compute pe/atom, it asks the pair
   style for per-atom energies on exactly those steps; pair_style mlff then switches the model's
   grade on (compute_extrapolation_grade, see the contract in pyexport/contract.py). Using the
   compute on any other step is an error. */

#include "compute_mlff_grade.h"

#include "pair_mlff.h"

#include "error.h"

using namespace LAMMPS_NS;

ComputeMLFFGrade::ComputeMLFFGrade(LAMMPS *lmp, int narg, char **arg) :
    ComputeMLFFAtomValue(lmp, narg, arg, "mlff/grade")
{
  // As compute pe/atom: LAMMPS then sets eflag_atom on the steps this compute is invoked on
  // (timeflag keeps the list of those steps), and pair_style mlff computes the grade on them.
  peatomflag = 1;
  timeflag = 1;
}

void ComputeMLFFGrade::check_model()
{
  if (pair->active_set_size() <= 0)
    error->all(FLERR, "compute mlff/grade: the model {} of pair_style mlff has no extrapolation grade: "
               "fit a cluster/cluster-nn potential with the active set (model attribute active_set_size)",
               pair->model_path());
}

const double *ComputeMLFFGrade::pair_values() const
{
  return pair->extrapolation_grade();
}

bigint ComputeMLFFGrade::pair_values_step() const
{
  return pair->extrapolation_grade_step();
}

std::string ComputeMLFFGrade::when_computed() const
{
  return "the extrapolation grade is computed only on steps on which LAMMPS announced this compute "
         "beforehand, as for per-atom energies";
}
