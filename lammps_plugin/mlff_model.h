/* A TorchScript model of the efgmd model contract (the docstring of pyexport/contract.py), for LAMMPS styles.

   MLFFModel loads an exported .pt file once, checks its contract attributes, and evaluates
   forward(pos, species, edge_index, n_local). ContractGraph builds those inputs from a LAMMPS
   full neighbour list without Python, reusing its buffers from step to step.

   Errors are reported as std::runtime_error with a complete message; the calling style turns
   them into error->all()/error->one() so that LAMMPS stops cleanly. */
#ifndef EFGMD_MLFF_MODEL_H
#define EFGMD_MLFF_MODEL_H

#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

namespace LAMMPS_NS {
class NeighList;
}

namespace efgmd {

constexpr int kContractVersion = 1;

// Torch intra-op threads of this process (one process = one MPI rank).
void set_num_threads(int nthreads);

class MLFFModel {
 public:
  // Load the model file `path`, whose contents are `bytes` (read once, see model_file.h), on
  // `device` ("cpu" or "cuda") and check that it is a contract model of kind `expected_kind`
  // ("potential" or "efg"). Throws std::runtime_error naming the file.
  MLFFModel(const std::string &path, const std::string &bytes, const std::string &expected_kind,
            const std::string &device);

  const std::vector<std::string> &elements() const { return elements_; }
  double cutoff() const { return cutoff_; }
  const std::string &kind() const { return kind_; }
  const std::string &dtype() const { return dtype_; }
  const std::string &path() const { return path_; }
  torch::Device device() const { return device_; }
  // Members K of a committee potential (optional attribute committee_size, K >= 2; its output
  // committee_forces is (K, N, 3)), or 0 for a single model.
  int committee_size() const { return committee_size_; }

  // Size of the training data's active set (optional attribute active_set_size), or 0: a model
  // with an active set returns extrapolation_grade (n_local,) while the grade is switched on.
  int active_set_size() const { return active_set_size_; }
  // Switch the grade on or off (the model's bool attribute compute_extrapolation_grade); it costs
  // a share of the model's time, so it is on only for steps that need it.
  void set_extrapolation_grade(bool on);

  // Whether the model has the optional bool attribute compute_atom_virial: it then returns
  // atom_virial only while that is true (models exported before it return atom_virial always).
  bool has_atom_virial_switch() const { return has_atom_virial_switch_; }
  // Ask for atom_virial on the next forward() calls or not (the attribute is set only when the
  // value changes); without the switch this does nothing.
  void set_atom_virial(bool on);

  // Cutoff of species pair (a, b) in A: the optional attribute pair_cutoffs (S, S), symmetric,
  // each <= cutoff(); cutoff() for every pair without it. The model needs no longer edge of the pair.
  double pair_cutoff(int a, int b) const { return pair_cutoff_[a * elements_.size() + b]; }
  bool has_pair_cutoffs() const { return has_pair_cutoffs_; }

  // Index of `symbol` in elements(), or -1.
  int species_index(const std::string &symbol) const;

  // Evaluate the model; the returned tensors are on the CPU and contiguous, in the dtype the
  // model returned (read them through output(), which checks them).
  c10::Dict<std::string, torch::Tensor> forward(const torch::Tensor &pos, const torch::Tensor &species,
                                                const torch::Tensor &edge_index, int64_t n_local);

  // Output `key` of a forward() result, checked against the contract: present, float64, of
  // `shape`, every value finite. Throws std::runtime_error naming the model file, the output and
  // the MD `step`, so that a model that breaks the contract stops the run instead of feeding
  // LAMMPS memory past the end of a tensor or NaN forces.
  torch::Tensor output(const c10::Dict<std::string, torch::Tensor> &out, const std::string &key,
                       c10::IntArrayRef shape, int64_t step) const;

 private:
  void read_pair_cutoffs();

  std::string path_;
  torch::jit::Module module_;
  torch::Device device_;
  std::vector<std::string> elements_;
  double cutoff_ = 0.0;
  std::string kind_;
  std::string dtype_;
  int committee_size_ = 0;
  int active_set_size_ = 0;
  std::vector<double> pair_cutoff_;    // (S * S) A, row-major by species
  bool has_pair_cutoffs_ = false;
  bool grade_on_ = false;
  bool has_atom_virial_switch_ = false;
  bool atom_virial_on_ = true;
};

// Contract inputs built from a LAMMPS full neighbour list.
// Rows: the list's owned atoms (in list order) first, then every other atom that is a neighbour,
// in order of first appearance. Atoms of types mapped to -1 (NULL in pair_coeff) are left out.
class ContractGraph {
 public:
  // type_to_species[t] for LAMMPS type t = 1..ntypes (index 0 unused); -1 = not handled.
  // Edges are the list's pairs shorter than the model's cutoff of their species pair.
  // With `mask`, only owned atoms with (mask[i] & groupbit) are centres; every mapped atom
  // still counts as a neighbour (the environment of a site does not depend on groups).
  // Centres come from the list entries ii in [ii_begin, ii_end) (ii_end < 0: to the end): the
  // model is strictly local, so the owned atoms can be evaluated in chunks whose results add up
  // to those of one call; other owned atoms of the list are then ordinary neighbour rows.
  void build(LAMMPS_NS::NeighList *list, double **x, const int *type, int nall,
             const std::vector<int> &type_to_species, const MLFFModel &model, const int *mask = nullptr,
             int groupbit = 0, int ii_begin = 0, int ii_end = -1);

  // Views over the internal buffers (no copy); valid until the next build().
  torch::Tensor pos() const;
  torch::Tensor species() const;
  torch::Tensor edge_index() const;

  int64_t n_local() const { return n_local_; }
  int64_t n_rows() const { return static_cast<int64_t>(row_atom_.size()); }
  int64_t n_edges() const { return static_cast<int64_t>(edge_src_.size()); }
  // LAMMPS atom index (local or ghost) of each row.
  const std::vector<int> &row_atom() const { return row_atom_; }
  // The first edge found whose atoms are closer than kMinDistance (LAMMPS indices), or -1, -1:
  // two atoms on one position, which no model can evaluate (r_ij = 0).
  static constexpr double kMinDistance = 1.0e-4;    // A
  int coincident_i() const { return coincident_i_; }
  int coincident_j() const { return coincident_j_; }
  double coincident_distance() const { return coincident_r_; }

 private:
  int row_of(int atom, const int *type, double **x, const std::vector<int> &type_to_species);

  int64_t n_local_ = 0;
  int coincident_i_ = -1, coincident_j_ = -1;
  double coincident_r_ = 0.0;
  std::vector<int> atom_row_;    // LAMMPS index -> row, -1 if not in the graph
  std::vector<int> row_atom_;
  std::vector<double> pos_;
  std::vector<int64_t> species_;
  std::vector<int64_t> edge_src_, edge_dst_, edge_buf_;
  std::vector<double> cutsq_;    // (ntypes + 1)^2: squared cutoff of each type pair, A^2
};

}    // namespace efgmd

#endif
