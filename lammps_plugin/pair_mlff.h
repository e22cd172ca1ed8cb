/* pair_style mlff: production MD with an efgmd TorchScript potential (see doc/pair_mlff.rst). */
#ifndef EFGMD_PAIR_MLFF_H
#define EFGMD_PAIR_MLFF_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace efgmd {
class MLFFModel;
class ContractGraph;
}    // namespace efgmd

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  // Owned atoms per model call unless `pair_style mlff chunk N` says otherwise (doc/pair_mlff.rst).
  static constexpr int kDefaultChunk = 512;

  PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;
  int pack_reverse_comm(int n, int first, double *buf) override;
  void unpack_reverse_comm(int n, int *list, double *buf) override;
  double memory_usage() override;

  // Committee models (compute mlff/uncertainty): K members, or 0 for a single model.
  int committee_size() const;
  const std::string &model_path() const;
  // Per owned atom i, sigma_i = sqrt(mean_k |F_k,i - mean_k F_k,i|^2) in eV/A, ghost
  // contributions summed home; valid on the step force_uncertainty_step() only.
  const double *force_uncertainty() const { return sigma; }
  bigint force_uncertainty_step() const { return sigma_step; }

  // Extrapolation grade (compute mlff/grade): active set size of the model (0 = no grade), and
  // per owned atom gamma_i, valid on the step extrapolation_grade_step() only. It is computed on
  // the steps where LAMMPS asks for per-atom energies (eflag_atom: the steps a compute mlff/grade,
  // which has peatomflag set, is invoked on), and only if such a compute exists.
  int active_set_size() const;
  const double *extrapolation_grade() const { return grade; }
  bigint extrapolation_grade_step() const { return grade_step; }

 private:
  void allocate();
  void evaluate_chunk(bigint step, bool with_grade);
  void clear_member_forces();
  void add_member_forces(const double *committee_forces);
  void finish_committee();
  void clear_grade();
  void warn_unlike_masses();

  int nthreads;
  int chunk = kDefaultChunk;           // owned atoms per model call (0: all in one call)
  std::string device;
  std::unique_ptr<efgmd::MLFFModel> model;
  std::unique_ptr<efgmd::ContractGraph> graph;
  std::vector<int> type_to_species;    // LAMMPS type (1..ntypes) -> model species, -1 = NULL
  bool masses_checked = false;         // masses compared with the mapped elements since pair_coeff

  int nmax_committee;                  // rows allocated in member_f and sigma
  double **member_f;                   // (nmax, 3K): every member's force on each atom, eV/A
  double *sigma;                       // (nmax): force deviation of each owned atom, eV/A
  bigint sigma_step;                   // timestep of the last sigma, -1 before the first

  bool grade_wanted = false;           // a compute mlff/grade exists (checked in init_style)
  int nmax_grade = 0;                  // rows allocated in grade
  double *grade = nullptr;             // (nmax): extrapolation grade of each owned atom
  bigint grade_step = -1;              // timestep of the last grade, -1 before the first
};

}    // namespace LAMMPS_NS

#endif
