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

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "update.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>

using namespace LAMMPS_NS;

ComputeMLFFUncertainty::ComputeMLFFUncertainty(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), pair(nullptr), nmax(0), sigma_atom(nullptr)
{
  if (narg != 3)
    error->all(FLERR, "compute mlff/uncertainty takes no arguments after the style "
               "(compute ID group mlff/uncertainty), got {}", narg - 3);
  scalar_flag = 1;
  extscalar = 0;
  peratom_flag = 1;
  size_peratom_cols = 0;
}

ComputeMLFFUncertainty::~ComputeMLFFUncertainty()
{
  memory->destroy(sigma_atom);
}

void ComputeMLFFUncertainty::init()
{
  // exact match: pair_style mlff, or the only mlff sub-style of pair_style hybrid(/overlay)
  pair = dynamic_cast<PairMLFF *>(force->pair_match("mlff", 1));
  if (pair == nullptr)
    error->all(FLERR, "compute mlff/uncertainty requires pair_style mlff (exactly one, possibly as a "
               "sub-style of pair_style hybrid) with a committee model");
  if (pair->committee_size() < 2)
    error->all(FLERR, "compute mlff/uncertainty: the model {} of pair_style mlff is not a committee "
               "(it has no committee_size attribute); fit one with `pyexport committee fit`",
               pair->model_path());
}

void ComputeMLFFUncertainty::check_current()
{
  if (pair->force_uncertainty_step() != update->ntimestep)
    error->all(FLERR, "compute mlff/uncertainty: pair_style mlff has not computed forces on step {} "
               "(the uncertainty exists only on steps where the pair style was evaluated)",
               update->ntimestep);
}

double ComputeMLFFUncertainty::compute_scalar()
{
  invoked_scalar = update->ntimestep;
  check_current();
  const double *sigma = pair->force_uncertainty();
  const int *mask = atom->mask;
  double local_max = 0.0;
  for (int i = 0; i < atom->nlocal; ++i)
    if (mask[i] & groupbit) local_max = std::max(local_max, sigma[i]);
  MPI_Allreduce(&local_max, &scalar, 1, MPI_DOUBLE, MPI_MAX, world);
  return scalar;
}

void ComputeMLFFUncertainty::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  check_current();
  if (atom->nmax > nmax) {
    nmax = atom->nmax;
    memory->destroy(sigma_atom);
    memory->create(sigma_atom, nmax, "mlff/uncertainty:sigma");
    vector_atom = sigma_atom;
  }
  const double *sigma = pair->force_uncertainty();
  const int *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; ++i) sigma_atom[i] = (mask[i] & groupbit) ? sigma[i] : 0.0;
}

double ComputeMLFFUncertainty::memory_usage()
{
  return static_cast<double>(nmax) * sizeof(double);
}
