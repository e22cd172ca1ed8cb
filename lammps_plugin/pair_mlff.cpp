/* pair_style mlff: evaluates an exported efgmd potential (TorchScript, the model contract of the
   pyexport/contract.py docstring; user documentation in doc/pair_mlff.rst) on the owned atoms of
   each rank. The model sees owned atoms and the ghost
   atoms within its cutoff; forces on ghosts go home through LAMMPS's reverse communication,
   which is why newton pair must be on. A committee model (attribute committee_size = K) also
   returns every member's forces; they are summed home the same way (this style's own reverse
   communication, 3K values per atom) and reduced to the per-atom force deviation sigma_i that
   compute mlff/uncertainty reports. */

#include "pair_mlff.h"

#include "element_masses.h"
#include "mlff_model.h"
#include "model_file.h"

#include "atom.h"
#include "citeme.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <dlfcn.h>

#include <cmath>
#include <cstring>

using namespace LAMMPS_NS;

static const char cite_efgmd[] =
    "efgmd (pair_style mlff, compute efg/atom, compute mlff/uncertainty, compute mlff/grade):\n\n"
    "@Misc{efgmd,\n"
    " title = {efgmd: machine-learned potentials and electric field gradients for\n"
    "          anharmonic crystals, from {VASP} data to {LAMMPS} molecular dynamics and {NMR}},\n"
    " note = {LAMMPS plugin mlffplugin.so, model contract version 1},\n"
    " year = {2026}\n"
    "}\n\n";

namespace {

// The file this code was loaded from (mlff_styles.so beside the mlffplugin.so that LAMMPS
// loaded): with several copies of the plugin around (an installed one, one on
// LAMMPS_PLUGIN_PATH, EFGMD_PLUGIN), LAMMPS's own log does not say which one runs.
std::string plugin_file()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&plugin_file), &info) == 0 || info.dli_fname == nullptr)
    return "(unknown: dladdr failed)";
  char *resolved = realpath(info.dli_fname, nullptr);
  std::string path = resolved ? resolved : info.dli_fname;
  free(resolved);
  return path;
}

}    // namespace

PairMLFF::PairMLFF(LAMMPS *lmp) :
    Pair(lmp), nthreads(1), device("cpu"), graph(std::make_unique<efgmd::ContractGraph>()),
    nmax_committee(0), member_f(nullptr), sigma(nullptr), sigma_step(-1)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // The virial comes from the model (exact, -sum r_ij (x) dE/dr_ij), not from f.r over atoms.
  no_virial_fdotr_compute = 1;
  // The per-atom virial splits each edge's virial half and half: not a centroid stress.
  centroidstressflag = CENTROID_NOTAVAIL;

  if (lmp->citeme) lmp->citeme->add(cite_efgmd);
  if (comm->me == 0) utils::logmesg(lmp, "pair_style mlff: plugin {}\n", plugin_file());
}

PairMLFF::~PairMLFF()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(map);    // elements belong to Pair
  }
  memory->destroy(member_f);
  memory->destroy(sigma);
  memory->destroy(grade);
}

void PairMLFF::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(map, n, "pair:map");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
}

/* pair_style mlff [threads N] [device cpu|cuda] [chunk N] */
void PairMLFF::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (key == "threads") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style mlff threads", error);
      nthreads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (nthreads < 1) error->all(FLERR, "pair_style mlff threads must be >= 1, got {}", arg[iarg + 1]);
      iarg += 2;
    } else if (key == "device") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style mlff device", error);
      device = arg[iarg + 1];
      if (device != "cpu" && device != "cuda")
        error->all(FLERR, "pair_style mlff device must be cpu or cuda, got {}", device);
      iarg += 2;
    } else if (key == "chunk") {
      if (iarg + 2 > narg) utils::missing_cmd_args(FLERR, "pair_style mlff chunk", error);
      chunk = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (chunk < 0) error->all(FLERR, "pair_style mlff chunk must be >= 0 (0: all owned atoms in one call), got {}",
                                arg[iarg + 1]);
      iarg += 2;
    } else {
      error->all(FLERR, "Unknown pair_style mlff keyword: {}", key);
    }
  }
  efgmd::set_num_threads(nthreads);
}

/* pair_coeff * * model.pt E1 E2 ... (one symbol or NULL per LAMMPS atom type) */
void PairMLFF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg < 3) utils::missing_cmd_args(FLERR, "pair_coeff mlff", error);
  // one_coeff = 1: LAMMPS itself insists on 'pair_coeff * *'.
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff mlff: {} element symbols given for {} atom types (one per type, or NULL)",
               narg - 3, ntypes);

  try {
    const auto file = efgmd::broadcast_model_file(lmp, arg[2]);
    model = std::make_unique<efgmd::MLFFModel>(file.path, file.bytes, "potential", device);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style mlff: {}", e.what());
  }
  const std::string &path = model->path();

  // LAMMPS's element map (elements, map, setflag of the mapped type pairs), then each element's
  // species in the model.
  map_element2type(ntypes, arg + 3);
  masses_checked = false;
  type_to_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; ++t) {
    if (map[t] < 0) continue;
    const int s = model->species_index(elements[map[t]]);
    if (s < 0) {
      std::string known;
      for (const auto &e : model->elements()) known += " " + e;
      error->all(FLERR, "pair_coeff mlff: element {} (atom type {}) is not in model {} (elements:{})",
                 elements[map[t]], t, path, known);
    }
    type_to_species[t] = s;
  }

  // Reverse communication of the members' forces: 3 values per member and atom. A new model
  // may have another K, so the per-atom arrays are made afresh on the next compute().
  comm_reverse = 3 * model->committee_size();
  memory->destroy(member_f);
  memory->destroy(sigma);
  nmax_committee = 0;
  sigma_step = -1;

  if (comm->me == 0) {
    utils::logmesg(lmp, "pair_style mlff: loaded {} ({} elements, cutoff {} A, {}, device {}, {} thread(s), "
                   "{} owned atoms per model call)\n", path, model->elements().size(), model->cutoff(),
                   model->dtype(), device, nthreads, chunk > 0 ? std::to_string(chunk) : std::string("all"));
    if (model->has_pair_cutoffs()) {
      std::string pairs;
      const auto &el = model->elements();
      for (size_t a = 0; a < el.size(); ++a)
        for (size_t b = a; b < el.size(); ++b)
          if (model->pair_cutoff(a, b) < model->cutoff())
            pairs += fmt::format(" {}-{} {}", el[a], el[b], model->pair_cutoff(a, b));
      utils::logmesg(lmp, "pair_style mlff: species-pair cutoffs (A):{}, {} A for the other pairs\n", pairs,
                     model->cutoff());
    }
    if (model->committee_size() > 0)
      utils::logmesg(lmp, "pair_style mlff: committee of {} models: forces of the mean, per-atom force "
                     "uncertainty for compute mlff/uncertainty\n", model->committee_size());
  }
}

int PairMLFF::active_set_size() const
{
  return model ? model->active_set_size() : 0;
}

int PairMLFF::committee_size() const
{
  return model ? model->committee_size() : 0;
}

const std::string &PairMLFF::model_path() const
{
  static const std::string none;
  return model ? model->path() : none;
}

void PairMLFF::init_style()
{
  if (!model) error->all(FLERR, "pair_style mlff requires pair_coeff * * model.pt E1 ... before the run");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlff requires newton pair on (ghost-atom forces are sent home)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlff requires units metal, the model contract's units (got units {})",
               update->unit_style);
  neighbor->add_request(this, NeighConst::REQ_FULL);
  if (!masses_checked) warn_unlike_masses();
  grade_wanted = !modify->get_compute_by_style("mlff/grade").empty();
  grade_step = -1;
}

/* Warn (rank 0, once per pair_coeff) about every atom type whose mass is set and is not that of
   the element pair_coeff maps it to: a permuted element list is valid input that puts the wrong
   potential on every atom. */
void PairMLFF::warn_unlike_masses()
{
  masses_checked = true;
  if (comm->me != 0 || atom->mass == nullptr || atom->mass_setflag == nullptr) return;
  for (int t = 1; t <= atom->ntypes; ++t) {
    if (type_to_species[t] < 0 || !atom->mass_setflag[t]) continue;
    const std::string &element = model->elements()[type_to_species[t]];
    if (!efgmd::mass_fits_element(atom->mass[t], element))
      error->warning(FLERR, "pair_coeff mlff: atom type {} has mass {} but is mapped to {} (standard "
                     "mass {}): is the element order in pair_coeff that of the atom types?", t,
                     atom->mass[t], element, efgmd::standard_atomic_mass(element));
  }
}

double PairMLFF::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  // the model's cutoff of this species pair (pair_cutoffs), so the neighbour list is no longer
  // than the model needs
  return model->pair_cutoff(type_to_species[i], type_to_species[j]);
}

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);

  const bigint step = update->ntimestep;
  // The grade is asked for only on the steps a compute mlff/grade needs it (see pair_mlff.h).
  const bool with_grade = grade_wanted && eflag_atom && model->active_set_size() > 0;
  try {
    model->set_extrapolation_grade(with_grade);
    // atom_virial costs a per-edge outer product and two (N, 6) scatters: asked for only on the
    // steps LAMMPS tallies per-atom virials (models without the switch return it always)
    model->set_atom_virial(vflag_atom != 0);
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlff: {}", e.what());
  }
  if (model->committee_size() > 0) clear_member_forces();
  if (with_grade) clear_grade();

  // The owned atoms in chunks of at most `chunk` per model call: the model is strictly local, so
  // the calls add up to one call over all atoms, while the model's temporaries (tens of kB per
  // atom) stay those of one chunk: memory and cache footprint independent of the rank's size.
  const int inum = list->inum;
  const int per_call = chunk > 0 ? chunk : std::max(inum, 1);
  for (int begin = 0; begin == 0 || begin < inum; begin += per_call) {
    graph->build(list, atom->x, atom->type, atom->nlocal + atom->nghost, type_to_species, *model, nullptr, 0,
                 begin, begin + per_call);
    if (graph->n_local() == 0 && begin > 0) continue;
    evaluate_chunk(step, with_grade);
  }

  if (model->committee_size() > 0) finish_committee();
  if (with_grade) grade_step = step;
}

/* One model call on the graph just built; its results are added to LAMMPS's arrays. */
void PairMLFF::evaluate_chunk(bigint step, bool with_grade)
{
  if (graph->coincident_i() >= 0)
    error->one(FLERR, "pair_style mlff: atoms {} and {} are {:.3g} A apart on step {}: no model can "
               "evaluate two atoms at one position (check the data file or an earlier step)",
               atom->tag[graph->coincident_i()], atom->tag[graph->coincident_j()],
               graph->coincident_distance(), step);

  const auto &rows = graph->row_atom();
  const int64_t nrows = graph->n_rows();
  const int64_t nlocal_rows = graph->n_local();

  // Every output read below is checked first (shape, dtype, finite values): a model that breaks
  // the contract stops the run with its file name instead of corrupting memory or the trajectory.
  c10::Dict<std::string, torch::Tensor> out;
  torch::Tensor energy, atom_energy, forces, virial_out, atom_virial, committee_forces, gamma;
  try {
    out = model->forward(graph->pos(), graph->species(), graph->edge_index(), nlocal_rows);
    energy = model->output(out, "energy", {}, step);
    atom_energy = model->output(out, "atom_energy", {nlocal_rows}, step);
    forces = model->output(out, "forces", {nrows, 3}, step);
    virial_out = model->output(out, "virial", {3, 3}, step);
    if (model->committee_size() > 0)
      committee_forces = model->output(out, "committee_forces", {model->committee_size(), nrows, 3}, step);
    if (vflag_atom && out.contains("atom_virial")) atom_virial = model->output(out, "atom_virial", {nrows, 6}, step);
    if (with_grade) gamma = model->output(out, "extrapolation_grade", {nlocal_rows}, step);
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlff: {}", e.what());
  }

  double **f = atom->f;
  const double *fr = forces.data_ptr<double>();
  for (int64_t r = 0; r < nrows; ++r) {
    double *fi = f[rows[r]];
    fi[0] += fr[3 * r + 0];
    fi[1] += fr[3 * r + 1];
    fi[2] += fr[3 * r + 2];
  }

  if (eflag_global) eng_vdwl += energy.item<double>();
  if (eflag_atom) {
    const double *ea = atom_energy.data_ptr<double>();
    for (int64_t r = 0; r < nlocal_rows; ++r) eatom[rows[r]] += ea[r];
  }
  if (vflag_global) {
    const double *w = virial_out.data_ptr<double>();
    virial[0] += w[0];
    virial[1] += w[4];
    virial[2] += w[8];
    virial[3] += 0.5 * (w[1] + w[3]);
    virial[4] += 0.5 * (w[2] + w[6]);
    virial[5] += 0.5 * (w[5] + w[7]);
  }
  if (model->committee_size() > 0) add_member_forces(committee_forces.data_ptr<double>());
  if (with_grade) {
    const double *g = gamma.data_ptr<double>();
    for (int64_t r = 0; r < nlocal_rows; ++r) grade[rows[r]] = g[r];
  }

  if (vflag_atom) {
    if (!atom_virial.defined())
      error->all(FLERR, "pair_style mlff: model {} provides no atom_virial, so per-atom virial "
                 "(compute stress/atom, centroid/stress/atom) is not available with it", model->path());
    const double *va = atom_virial.data_ptr<double>();
    for (int64_t r = 0; r < nrows; ++r)
      for (int k = 0; k < 6; ++k) vatom[rows[r]][k] += va[6 * r + k];
  }
}

/* Zero every member's force on every atom (owned and ghost) before a step's chunks add theirs. */
void PairMLFF::clear_member_forces()
{
  const int width = 3 * model->committee_size();
  if (atom->nmax > nmax_committee) {
    nmax_committee = atom->nmax;
    memory->destroy(member_f);
    memory->destroy(sigma);
    memory->create(member_f, nmax_committee, width, "pair:member_f");
    memory->create(sigma, nmax_committee, "pair:sigma");
  }
  const int nall = atom->nlocal + atom->nghost;
  for (int i = 0; i < nall; ++i)
    for (int c = 0; c < width; ++c) member_f[i][c] = 0.0;
}

/* Add one chunk's member forces (K, nrows, 3) onto the LAMMPS atoms of its rows. */
void PairMLFF::add_member_forces(const double *committee_forces)
{
  const int k_members = model->committee_size();
  const auto &rows = graph->row_atom();
  const int64_t nrows = graph->n_rows();
  for (int k = 0; k < k_members; ++k) {
    const double *fk = committee_forces + 3 * nrows * k;
    for (int64_t r = 0; r < nrows; ++r) {
      double *fi = member_f[rows[r]] + 3 * k;
      fi[0] += fk[3 * r + 0];
      fi[1] += fk[3 * r + 1];
      fi[2] += fk[3 * r + 2];
    }
  }
}

/* Send the ghost rows of the members' forces home and reduce them per owned atom to
   sigma_i = sqrt(mean_k |F_k,i - mean_k F_k,i|^2). */
void PairMLFF::finish_committee()
{
  const int k_members = model->committee_size();
  const int nlocal = atom->nlocal;
  comm->reverse_comm(this);

  for (int i = 0; i < nlocal; ++i) {
    double mean[3] = {0.0, 0.0, 0.0};
    for (int k = 0; k < k_members; ++k)
      for (int d = 0; d < 3; ++d) mean[d] += member_f[i][3 * k + d];
    for (int d = 0; d < 3; ++d) mean[d] /= k_members;
    double spread = 0.0;
    for (int k = 0; k < k_members; ++k)
      for (int d = 0; d < 3; ++d) {
        const double delta = member_f[i][3 * k + d] - mean[d];
        spread += delta * delta;
      }
    sigma[i] = std::sqrt(spread / k_members);
  }
  sigma_step = update->ntimestep;
}

/* Zero the grade of every owned atom (owned atoms of NULL types keep 0) before the chunks fill it. */
void PairMLFF::clear_grade()
{
  if (atom->nmax > nmax_grade) {
    nmax_grade = atom->nmax;
    memory->destroy(grade);
    memory->create(grade, nmax_grade, "pair:grade");
  }
  for (int i = 0; i < atom->nlocal; ++i) grade[i] = 0.0;
}

int PairMLFF::pack_reverse_comm(int n, int first, double *buf)
{
  const int width = comm_reverse;
  int m = 0;
  for (int i = first; i < first + n; ++i)
    for (int c = 0; c < width; ++c) buf[m++] = member_f[i][c];
  return m;
}

void PairMLFF::unpack_reverse_comm(int n, int *list, double *buf)
{
  const int width = comm_reverse;
  int m = 0;
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < width; ++c) member_f[list[i]][c] += buf[m++];
}

double PairMLFF::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += static_cast<double>(nmax_committee) * (comm_reverse + 1) * sizeof(double);
  bytes += static_cast<double>(nmax_grade) * sizeof(double);
  return bytes;
}
