#include "compute_mlff_atom_value.h"

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

ComputeMLFFAtomValue::ComputeMLFFAtomValue(LAMMPS *lmp, int narg, char **arg, const std::string &style) :
    Compute(lmp, narg, arg), style(style), pair(nullptr), nmax(0), value_atom(nullptr)
{
  if (narg != 3)
    error->all(FLERR, "compute {} takes no arguments after the style (compute ID group {}), got {}", style,
               style, narg - 3);
  scalar_flag = 1;
  extscalar = 0;
  peratom_flag = 1;
  size_peratom_cols = 0;
}

ComputeMLFFAtomValue::~ComputeMLFFAtomValue()
{
  memory->destroy(value_atom);
}

void ComputeMLFFAtomValue::init()
{
  // exact match: pair_style mlff, or the only mlff sub-style of pair_style hybrid(/overlay)
  pair = dynamic_cast<PairMLFF *>(force->pair_match("mlff", 1));
  if (pair == nullptr)
    error->all(FLERR, "compute {} requires pair_style mlff (exactly one, possibly as a sub-style of "
               "pair_style hybrid)", style);
  check_model();
}

void ComputeMLFFAtomValue::check_current()
{
  if (pair_values_step() != update->ntimestep)
    error->all(FLERR, "compute {}: pair_style mlff has not computed it on step {} ({})", style,
               update->ntimestep, when_computed());
}

double ComputeMLFFAtomValue::compute_scalar()
{
  invoked_scalar = update->ntimestep;
  check_current();
  const double *value = pair_values();
  const int *mask = atom->mask;
  double local_max = 0.0;
  for (int i = 0; i < atom->nlocal; ++i)
    if (mask[i] & groupbit) local_max = std::max(local_max, value[i]);
  MPI_Allreduce(&local_max, &scalar, 1, MPI_DOUBLE, MPI_MAX, world);
  return scalar;
}

void ComputeMLFFAtomValue::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  check_current();
  if (atom->nmax > nmax) {
    nmax = atom->nmax;
    memory->destroy(value_atom);
    memory->create(value_atom, nmax, "compute:value_atom");
    vector_atom = value_atom;
  }
  const double *value = pair_values();
  const int *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; ++i) value_atom[i] = (mask[i] & groupbit) ? value[i] : 0.0;
}

double ComputeMLFFAtomValue::memory_usage()
{
  return static_cast<double>(nmax) * sizeof(double);
}
