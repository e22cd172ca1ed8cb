/* pair_style mlff: production MD with an efgmd TorchScript potential (see README.md here). */
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
  PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;

 private:
  void allocate();

  int nthreads;
  std::string device;
  std::unique_ptr<efgmd::MLFFModel> model;
  std::unique_ptr<efgmd::ContractGraph> graph;
  std::vector<int> type_to_species;    // LAMMPS type (1..ntypes) -> model species, -1 = NULL
};

}    // namespace LAMMPS_NS

#endif
