/* Standard atomic masses, to check that the element a LAMMPS atom type is mapped to in
   pair_coeff fits the mass the type was given (a permuted element list otherwise runs without
   complaint, with the wrong potential on every atom). */
#ifndef EFGMD_ELEMENT_MASSES_H
#define EFGMD_ELEMENT_MASSES_H

#include <string>

namespace efgmd {

// Standard atomic weight of `symbol` in g/mol (LAMMPS metal mass units), or 0 if unknown.
double standard_atomic_mass(const std::string &symbol);

// Whether `mass` (g/mol) is within 1 % of the standard mass of `symbol` (or of deuterium or
// tritium for H); true for symbols not in the table.
bool mass_fits_element(double mass, const std::string &symbol);

}    // namespace efgmd

#endif
