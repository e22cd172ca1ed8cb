/* compute ID group efg/atom model.pt E1 ... En [device cpu|cuda]

   Evaluates an exported efgmd EFG model (kind "efg") on the owned atoms of the group and returns
   six columns per atom in VASP's order, V_xx V_yy V_zz V_xy V_xz V_yz (V/A^2), for dump custom,
   fix ave/atom, compute reduce. Atoms outside the group get zeros. The neighbour environment of
   a site includes every atom of a mapped type, in the group or not. */

#include "compute_efg_atom.h"

#include "mlff_model.h"
#include "model_file.h"
#include "neigh_request_abi.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "pair.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cstring>

using namespace LAMMPS_NS;

ComputeEFGAtom::ComputeEFGAtom(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), nmax(0), efg(nullptr), list(nullptr),
    graph(std::make_unique<efgmd::ContractGraph>())
{
  const int ntypes = atom->ntypes;
  if (narg < 4) utils::missing_cmd_args(FLERR, "compute efg/atom", error);
  if (narg < 4 + ntypes)
    error->all(FLERR, "compute efg/atom: {} element symbols given for {} atom types "
               "(compute ID group efg/atom model.pt E1 ... E{})", narg - 4, ntypes, ntypes);
  std::string device = "cpu";
  for (int iarg = 4 + ntypes; iarg < narg; iarg += 2) {
    if (strcmp(arg[iarg], "device") == 0 && iarg + 1 < narg) {
      device = arg[iarg + 1];
    } else {
      error->all(FLERR, "Unknown compute efg/atom keyword: {}", arg[iarg]);
    }
  }
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "compute efg/atom requires units metal, the model contract's units (got units {})",
               update->unit_style);

  try {
    const auto file = efgmd::broadcast_model_file(lmp, arg[3]);
    model = std::make_unique<efgmd::MLFFModel>(file.path, file.bytes, "efg", device);
  } catch (const std::exception &e) {
    error->all(FLERR, "compute efg/atom: {}", e.what());
  }
  const std::string &path = model->path();
  type_to_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; ++t) {
    const std::string symbol = arg[3 + t];
    if (symbol == "NULL") continue;
    const int s = model->species_index(symbol);
    if (s < 0)
      error->all(FLERR, "compute efg/atom: element {} (atom type {}) is not in model {}", symbol, t, path);
    type_to_species[t] = s;
  }

  peratom_flag = 1;
  size_peratom_cols = 6;
}

ComputeEFGAtom::~ComputeEFGAtom()
{
  memory->destroy(efg);
}

void ComputeEFGAtom::init()
{
  // The list is built on the step the compute runs, from the ghost atoms that communication
  // keeps: those reach every atom within the model cutoff only if the ghost cutoff (as Neighbor
  // and Comm will set it from the pair cutoff, or comm_modify cutoff) covers it + skin.
  const double pair_reach = force->pair ? force->pair->cutforce + neighbor->skin : 0.0;
  const double ghost_cutoff = std::max(pair_reach, comm->cutghostuser);
  const double needed = model->cutoff() + neighbor->skin;
  if (ghost_cutoff < needed)
    error->all(FLERR, "compute efg/atom: ghost atoms reach {} A (pair cutoff + skin or comm_modify cutoff), "
               "less than the EFG model cutoff {} A + skin {} A; use comm_modify cutoff {}", ghost_cutoff,
               model->cutoff(), neighbor->skin, needed);

  // An occasional full list with the EFG model's own cutoff for every type pair: the pair style's
  // list has its cutoffs (per type pair, and per sub-style with pair_style hybrid), which may be
  // shorter than the EFG model's.
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_OCCASIONAL)->set_cutoff(model->cutoff());
}

void ComputeEFGAtom::init_list(int, NeighList *ptr)
{
  list = ptr;
}

void ComputeEFGAtom::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  if (atom->nmax > nmax) {
    memory->destroy(efg);
    nmax = atom->nmax;
    memory->create(efg, nmax, 6, "efg/atom:efg");
    array_atom = efg;
  }
  const int nlocal = atom->nlocal;
  for (int i = 0; i < nlocal; ++i)
    for (int k = 0; k < 6; ++k) efg[i][k] = 0.0;

  neighbor->build_one(list);
  graph->build(list, atom->x, atom->type, nlocal + atom->nghost, type_to_species, *model,
               atom->mask, groupbit);
  const bigint step = update->ntimestep;
  if (graph->coincident_i() >= 0)
    error->one(FLERR, "compute efg/atom: atoms {} and {} are {:.3g} A apart on step {}: no model can "
               "evaluate two atoms at one position", atom->tag[graph->coincident_i()],
               atom->tag[graph->coincident_j()], graph->coincident_distance(), step);

  torch::Tensor efg_out;
  try {
    auto out = model->forward(graph->pos(), graph->species(), graph->edge_index(), graph->n_local());
    efg_out = model->output(out, "efg", {graph->n_local(), 3, 3}, step);
  } catch (const std::exception &e) {
    error->one(FLERR, "compute efg/atom: {}", e.what());
  }
  const double *v = efg_out.data_ptr<double>();
  const auto &rows = graph->row_atom();
  for (int64_t r = 0; r < graph->n_local(); ++r) {
    double *e = efg[rows[r]];
    const double *t = v + 9 * r;    // row-major 3x3
    e[0] = t[0];
    e[1] = t[4];
    e[2] = t[8];
    e[3] = 0.5 * (t[1] + t[3]);
    e[4] = 0.5 * (t[2] + t[6]);
    e[5] = 0.5 * (t[5] + t[7]);
  }
}

double ComputeEFGAtom::memory_usage()
{
  return 6.0 * nmax * sizeof(double);
}
