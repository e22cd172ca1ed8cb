#include "element_masses.h"

#include <cmath>
#include <map>

namespace {

// Standard atomic weights (g/mol) of H .. Pu as ASE tabulates them (ase.data.atomic_masses,
// IUPAC): the masses that `pyexport` writes into LAMMPS data files.
const std::map<std::string, double> &standard_masses()
{
  static const std::map<std::string, double> table{
    {"H", 1.008}, {"He", 4.0026}, {"Li", 6.94}, {"Be", 9.01218}, {"B", 10.81}, {"C", 12.011},
    {"N", 14.007}, {"O", 15.999}, {"F", 18.9984}, {"Ne", 20.1797}, {"Na", 22.9898}, {"Mg", 24.305},
    {"Al", 26.9815}, {"Si", 28.085}, {"P", 30.9738}, {"S", 32.06}, {"Cl", 35.45}, {"Ar", 39.948},
    {"K", 39.0983}, {"Ca", 40.078}, {"Sc", 44.9559}, {"Ti", 47.867}, {"V", 50.9415},
    {"Cr", 51.9961}, {"Mn", 54.938}, {"Fe", 55.845}, {"Co", 58.9332}, {"Ni", 58.6934},
    {"Cu", 63.546}, {"Zn", 65.38}, {"Ga", 69.723}, {"Ge", 72.63}, {"As", 74.9216}, {"Se", 78.971},
    {"Br", 79.904}, {"Kr", 83.798}, {"Rb", 85.4678}, {"Sr", 87.62}, {"Y", 88.9058}, {"Zr", 91.224},
    {"Nb", 92.9064}, {"Mo", 95.95}, {"Tc", 97.9072}, {"Ru", 101.07}, {"Rh", 102.906},
    {"Pd", 106.42}, {"Ag", 107.868}, {"Cd", 112.414}, {"In", 114.818}, {"Sn", 118.71},
    {"Sb", 121.76}, {"Te", 127.6}, {"I", 126.904}, {"Xe", 131.293}, {"Cs", 132.905},
    {"Ba", 137.327}, {"La", 138.905}, {"Ce", 140.116}, {"Pr", 140.908}, {"Nd", 144.242},
    {"Pm", 144.913}, {"Sm", 150.36}, {"Eu", 151.964}, {"Gd", 157.25}, {"Tb", 158.925},
    {"Dy", 162.5}, {"Ho", 164.93}, {"Er", 167.259}, {"Tm", 168.934}, {"Yb", 173.054},
    {"Lu", 174.967}, {"Hf", 178.49}, {"Ta", 180.948}, {"W", 183.84}, {"Re", 186.207},
    {"Os", 190.23}, {"Ir", 192.217}, {"Pt", 195.084}, {"Au", 196.967}, {"Hg", 200.592},
    {"Tl", 204.38}, {"Pb", 207.2}, {"Bi", 208.98}, {"Po", 208.982}, {"At", 209.987},
    {"Rn", 222.018}, {"Fr", 223.02}, {"Ra", 226.025}, {"Ac", 227.028}, {"Th", 232.038},
    {"Pa", 231.036}, {"U", 238.029}, {"Np", 237.048}, {"Pu", 244.064}};
  return table;
}

// Hydrogen isotopes are common in MD (deuterium for longer time steps or isotope effects):
// their masses are intended, not a wrong element order.
constexpr double kDeuterium = 2.014102, kTritium = 3.016049;

}    // namespace

double efgmd::standard_atomic_mass(const std::string &symbol)
{
  const auto &table = standard_masses();
  const auto found = table.find(symbol);
  return found == table.end() ? 0.0 : found->second;
}

bool efgmd::mass_fits_element(double mass, const std::string &symbol)
{
  const double standard = standard_atomic_mass(symbol);
  if (standard <= 0.0) return true;    // unknown symbol: nothing to compare with
  auto near = [mass](double reference) { return std::fabs(mass - reference) <= 0.01 * reference; };
  if (near(standard)) return true;
  return symbol == "H" && (near(kDeuterium) || near(kTritium));
}
