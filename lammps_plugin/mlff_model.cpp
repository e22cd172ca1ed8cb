#include "mlff_model.h"

#include "neigh_list.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

using namespace efgmd;

namespace {

std::string first_line(const std::string &text)
{
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

c10::IValue required_attr(const torch::jit::Module &m, const std::string &path, const char *name)
{
  if (!m.hasattr(name))
    throw std::runtime_error("model file " + path + " is not an efgmd contract model: it has no '" +
                             name + "' attribute");
  return m.attr(name);
}

std::string shape_text(c10::IntArrayRef shape)
{
  std::string text = "(";
  for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

}    // namespace

void efgmd::set_num_threads(int nthreads)
{
  at::set_num_threads(nthreads);
}

MLFFModel::MLFFModel(const std::string &path, const std::string &bytes, const std::string &expected_kind,
                     const std::string &device) :
    path_(path), device_(torch::kCPU)
{
  if (device == "cuda") {
    if (!torch::cuda::is_available())
      throw std::runtime_error("device cuda requested but this libtorch sees no CUDA device");
    device_ = torch::Device(torch::kCUDA);
  } else if (device != "cpu") {
    throw std::runtime_error("unknown device '" + device + "' (use cpu or cuda)");
  }

  try {
    std::istringstream archive(bytes);
    module_ = torch::jit::load(archive, device_);
  } catch (const c10::Error &e) {
    throw std::runtime_error("cannot read model file " + path +
                             " as a TorchScript archive: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception &e) {
    throw std::runtime_error("cannot read model file " + path +
                             " as a TorchScript archive: " + first_line(e.what()));
  }
  module_.eval();

  const auto version = required_attr(module_, path, "contract_version");
  if (!version.isInt() || version.toInt() != kContractVersion)
    throw std::runtime_error("model file " + path + " has contract_version " +
                             (version.isInt() ? std::to_string(version.toInt()) : std::string("?")) +
                             ", this plugin reads version " + std::to_string(kContractVersion));
  kind_ = required_attr(module_, path, "kind").toStringRef();
  if (kind_ != expected_kind)
    throw std::runtime_error("model file " + path + " is of kind '" + kind_ + "', expected '" +
                             expected_kind + "'");
  const auto units = required_attr(module_, path, "units").toStringRef();
  if (units != "metal")
    throw std::runtime_error("model file " + path + " uses units '" + units +
                             "', only metal units are supported");
  cutoff_ = required_attr(module_, path, "cutoff").toDouble();
  if (!(cutoff_ > 0.0)) throw std::runtime_error("model file " + path + " has a non-positive cutoff");
  dtype_ = required_attr(module_, path, "dtype").toStringRef();
  for (const auto &e : required_attr(module_, path, "elements").toListRef())
    elements_.push_back(e.toStringRef());
  if (elements_.empty()) throw std::runtime_error("model file " + path + " lists no elements");
  if (module_.hasattr("committee_size")) {
    const auto members = module_.attr("committee_size");
    if (!members.isInt() || members.toInt() < 2)
      throw std::runtime_error("model file " + path + " has a committee_size that is not an integer >= 2");
    committee_size_ = static_cast<int>(members.toInt());
  }
  read_pair_cutoffs();
  if (module_.hasattr("compute_atom_virial")) {
    const auto on = module_.attr("compute_atom_virial");
    if (!on.isBool())
      throw std::runtime_error("model file " + path + " has a compute_atom_virial attribute that is not a bool");
    has_atom_virial_switch_ = true;
    atom_virial_on_ = on.toBool();
  }
  if (module_.hasattr("active_set_size")) {
    const auto size = module_.attr("active_set_size");
    if (!size.isInt() || size.toInt() < 0)
      throw std::runtime_error("model file " + path + " has an active_set_size that is not an integer >= 0");
    active_set_size_ = static_cast<int>(size.toInt());
    if (active_set_size_ > 0 && !(module_.hasattr("compute_extrapolation_grade") &&
                                  module_.attr("compute_extrapolation_grade").isBool()))
      throw std::runtime_error("model file " + path + " has an active set but no bool attribute "
                               "compute_extrapolation_grade");
  }
}

void MLFFModel::read_pair_cutoffs()
{
  const size_t n = elements_.size();
  pair_cutoff_.assign(n * n, cutoff_);
  if (!module_.hasattr("pair_cutoffs")) return;
  const auto value = module_.attr("pair_cutoffs");
  if (!value.isTensor()) throw std::runtime_error("model file " + path_ + ": pair_cutoffs is not a tensor");
  const auto table = value.toTensor().detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t s = static_cast<int64_t>(n);
  if (table.dim() != 2 || table.size(0) != s || table.size(1) != s)
    throw std::runtime_error("model file " + path_ + ": pair_cutoffs has shape " + shape_text(table.sizes()) +
                             ", expected (" + std::to_string(n) + ", " + std::to_string(n) + ") for its elements");
  const double *r = table.data_ptr<double>();
  for (size_t a = 0; a < n; ++a)
    for (size_t b = 0; b < n; ++b) {
      const double rab = r[a * n + b];
      if (!(rab > 0.0 && rab <= cutoff_) || rab != r[b * n + a])
        throw std::runtime_error("model file " + path_ + ": pair_cutoffs[" + elements_[a] + ", " + elements_[b] +
                                 "] = " + std::to_string(rab) + " A is not symmetric and in (0, cutoff]");
      pair_cutoff_[a * n + b] = rab;
    }
  has_pair_cutoffs_ = true;
}

void MLFFModel::set_extrapolation_grade(bool on)
{
  if (on == grade_on_) return;
  if (on && active_set_size_ <= 0)
    throw std::runtime_error("model file " + path_ + " has no extrapolation grade (no active set)");
  module_.setattr("compute_extrapolation_grade", on);
  grade_on_ = on;
}

void MLFFModel::set_atom_virial(bool on)
{
  if (!has_atom_virial_switch_ || on == atom_virial_on_) return;
  module_.setattr("compute_atom_virial", on);
  atom_virial_on_ = on;
}

int MLFFModel::species_index(const std::string &symbol) const
{
  for (size_t k = 0; k < elements_.size(); ++k)
    if (elements_[k] == symbol) return static_cast<int>(k);
  return -1;
}

c10::Dict<std::string, torch::Tensor> MLFFModel::forward(const torch::Tensor &pos,
                                                         const torch::Tensor &species,
                                                         const torch::Tensor &edge_index,
                                                         int64_t n_local)
{
  std::vector<torch::jit::IValue> inputs{pos.to(device_), species.to(device_),
                                         edge_index.to(device_), n_local};
  auto raw = module_.forward(inputs).toGenericDict();
  c10::Dict<std::string, torch::Tensor> out;
  for (const auto &item : raw) {
    auto t = item.value().toTensor().detach().to(torch::kCPU).contiguous();
    out.insert(item.key().toStringRef(), t);
  }
  return out;
}

torch::Tensor MLFFModel::output(const c10::Dict<std::string, torch::Tensor> &out, const std::string &key,
                                c10::IntArrayRef shape, int64_t step) const
{
  const std::string where = "model " + path_ + ", step " + std::to_string(step) + ": output '" + key + "'";
  if (!out.contains(key)) throw std::runtime_error(where + " is missing (see the contract in pyexport/contract.py)");
  torch::Tensor t = out.at(key);
  if (t.scalar_type() != torch::kFloat64)
    throw std::runtime_error(where + " is " + std::string(c10::toString(t.scalar_type())) +
                             ", the contract says float64");
  if (t.sizes() != shape)
    throw std::runtime_error(where + " has shape " + shape_text(t.sizes()) + ", expected " + shape_text(shape));
  const double *v = t.data_ptr<double>();
  const int64_t n = t.numel();
  for (int64_t k = 0; k < n; ++k)
    if (!std::isfinite(v[k]))
      throw std::runtime_error(where + " holds a non-finite value (" + std::to_string(v[k]) +
                               " at flat index " + std::to_string(k) + ")");
  return t;
}

// ---------------------------------------------------------------------------------------------

int ContractGraph::row_of(int atom, const int *type, double **x,
                          const std::vector<int> &type_to_species)
{
  int &row = atom_row_[atom];
  if (row < 0) {
    row = static_cast<int>(row_atom_.size());
    row_atom_.push_back(atom);
    pos_.insert(pos_.end(), {x[atom][0], x[atom][1], x[atom][2]});
    species_.push_back(type_to_species[type[atom]]);
  }
  return row;
}

void ContractGraph::build(LAMMPS_NS::NeighList *list, double **x, const int *type, int nall,
                          const std::vector<int> &type_to_species, const MLFFModel &model, const int *mask,
                          int groupbit, int ii_begin, int ii_end)
{
  // clear() keeps capacity, so after the first steps no allocation happens here. Only the rows
  // of the previous build are reset, so building a step in many chunks costs no O(nall) per chunk.
  if (static_cast<int>(atom_row_.size()) != nall) {
    atom_row_.assign(nall, -1);
  } else {
    for (const int atom : row_atom_) atom_row_[atom] = -1;
  }
  row_atom_.clear();
  pos_.clear();
  species_.clear();
  edge_src_.clear();
  edge_dst_.clear();
  coincident_i_ = coincident_j_ = -1;

  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  // squared cutoff of each pair of LAMMPS types, from the model's species pairs
  const int ntypes = static_cast<int>(type_to_species.size()) - 1;
  cutsq_.assign((ntypes + 1) * (ntypes + 1), 0.0);
  for (int a = 1; a <= ntypes; ++a)
    for (int b = 1; b <= ntypes; ++b)
      if (type_to_species[a] >= 0 && type_to_species[b] >= 0) {
        const double r = model.pair_cutoff(type_to_species[a], type_to_species[b]);
        cutsq_[a * (ntypes + 1) + b] = r * r;
      }

  auto is_centre = [&](int i) {
    return type_to_species[type[i]] >= 0 && (mask == nullptr || (mask[i] & groupbit));
  };
  const int first = std::max(0, ii_begin);
  const int last = ii_end < 0 ? inum : std::min(inum, ii_end);
  for (int ii = first; ii < last; ++ii) {
    const int i = ilist[ii];
    if (is_centre(i)) row_of(i, type, x, type_to_species);
  }
  n_local_ = static_cast<int64_t>(row_atom_.size());

  for (int ii = first; ii < last; ++ii) {
    const int i = ilist[ii];
    if (!is_centre(i)) continue;
    const int row_i = atom_row_[i];
    const double *cutsq_i = cutsq_.data() + type[i] * (ntypes + 1);
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      if (type_to_species[type[j]] < 0) continue;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double r2 = dx * dx + dy * dy + dz * dz;
      if (r2 >= cutsq_i[type[j]]) continue;
      if (r2 < kMinDistance * kMinDistance && coincident_i_ < 0) {
        coincident_i_ = i;
        coincident_j_ = j;
        coincident_r_ = std::sqrt(r2);
      }
      edge_src_.push_back(row_i);
      edge_dst_.push_back(row_of(j, type, x, type_to_species));
    }
  }
  edge_buf_.resize(2 * edge_src_.size());
  std::copy(edge_src_.begin(), edge_src_.end(), edge_buf_.begin());
  std::copy(edge_dst_.begin(), edge_dst_.end(), edge_buf_.begin() + edge_src_.size());
}

torch::Tensor ContractGraph::pos() const
{
  return torch::from_blob(const_cast<double *>(pos_.data()), {n_rows(), 3},
                          torch::TensorOptions().dtype(torch::kFloat64));
}

torch::Tensor ContractGraph::species() const
{
  return torch::from_blob(const_cast<int64_t *>(species_.data()), {n_rows()},
                          torch::TensorOptions().dtype(torch::kInt64));
}

torch::Tensor ContractGraph::edge_index() const
{
  return torch::from_blob(const_cast<int64_t *>(edge_buf_.data()), {2, n_edges()},
                          torch::TensorOptions().dtype(torch::kInt64));
}
