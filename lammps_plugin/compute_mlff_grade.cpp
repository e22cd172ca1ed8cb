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

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "update.h"
#include "utils.h"

#include <mpi.h>

#include <algorithm>

using namespace LAMMPS_NS;

ComputeMLFFGrade::ComputeMLFFGrade(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), pair(nullptr), nmax(0), grade_atom(nullptr)
{
  if (narg != 3)
    error->all(FLERR, "compute mlff/grade takes no arguments after the style "
               "(compute ID group mlff/grade), got {}", narg - 3);
  scalar_flag = 1;
  extscalar = 0;
  peratom_flag = 1;
  size_peratom_cols = 0;
  // As compute pe/atom: LAMMPS then sets eflag_atom on the steps this compute is invoked on
  // (timeflag keeps the list of those steps).
  peatomflag = 1;
  timeflag = 1;
}

ComputeMLFFGrade::~ComputeMLFFGrade()
{
  memory->destroy(grade_atom);
}

void ComputeMLFFGrade::init()
{
  // exact match: pair_style mlff, or the only mlff sub-style of pair_style hybrid(/overlay)
  pair = dynamic_cast<PairMLFF *>(force->pair_match("mlff", 1));
  if (pair == nullptr)
    error->all(FLERR, "compute mlff/grade requires pair_style mlff (exactly one, possibly as a "
               "sub-style of pair_style hybrid) with a potential that has an active set");
  if (pair->active_set_size() <= 0)
    error->all(FLERR, "compute mlff/grade: the model {} of pair_style mlff has no extrapolation grade: "
               "fit a cluster/cluster-nn potential with the active set (model attribute active_set_size)",
               pair->model_path());
}

void ComputeMLFFGrade::check_current()
{
  if (pair->extrapolation_grade_step() != update->ntimestep)
    error->all(FLERR, "compute mlff/grade: the extrapolation grade was not computed on step {} "
               "(pair_style mlff computes it only on steps on which LAMMPS announced this compute "
               "beforehand, as for per-atom energies)", update->ntimestep);
}

double ComputeMLFFGrade::compute_scalar()
{
  invoked_scalar = update->ntimestep;
  check_current();
  const double *grade = pair->extrapolation_grade();
  const int *mask = atom->mask;
  double local_max = 0.0;
  for (int i = 0; i < atom->nlocal; ++i)
    if (mask[i] & groupbit) local_max = std::max(local_max, grade[i]);
  MPI_Allreduce(&local_max, &scalar, 1, MPI_DOUBLE, MPI_MAX, world);
  return scalar;
}

void ComputeMLFFGrade::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  check_current();
  if (atom->nmax > nmax) {
    nmax = atom->nmax;
    memory->destroy(grade_atom);
    memory->create(grade_atom, nmax, "mlff/grade:grade");
    vector_atom = grade_atom;
  }
  const double *grade = pair->extrapolation_grade();
  const int *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; ++i) grade_atom[i] = (mask[i] & groupbit) ? grade[i] : 0.0;
}

double ComputeMLFFGrade::memory_usage()
{
  return static_cast<double>(nmax) * sizeof(double);
}
