"""numba kernels on bit-string determinants (CPU).

A determinant is a ``(2, nw)`` uint64 array: row 0 the alpha string, row 1 the beta string; bit ``i``
of word ``k`` is spatial orbital ``64 k + i``. The fermionic order is all alpha creation operators
before the beta ones, each in ascending orbital order (PySCF FCI vectors and Quantum Package use the
same relative signs). A string is ranked in the combinatorial number system,
``rank = sum_k C(o_k, k + 1)`` over its occupied orbitals ``o_0 < o_1 < ...``, and a determinant's
``key = rank_alpha * n_beta_strings + rank_beta`` is a unique int64 used for sorting and lookups.

Slater-Condon rules (integrals in chemists' notation ``eri[p, q, r, s] = (pq|rs)``, Hartree):

* diagonal: ``sum_i h_ii + 1/2 sum_ij [(ii|jj) - delta_{s_i s_j} (ij|ji)]`` over occupied spin orbitals;
* single ``h -> p`` (spin s): ``sign [h_hp + sum_{j in occ_s} ((hp|jj) - (hj|jp)) + sum_{j in occ_s'} (hp|jj)]``;
* same-spin double ``h1 h2 -> p1 p2``: ``sign [(h1 p1|h2 p2) - (h1 p2|h2 p1)]``;
* opposite-spin double: ``sign_a sign_b (h p|h' p')``.

The sign of ``a+_p a_h`` on a string is ``(-1)^n`` with ``n`` the occupied orbitals strictly between
``h`` and ``p``; a double is two singles applied in turn (Scemama and Giner, arXiv:1311.6244).

Modules, each importing only those above it:

* :mod:`.bits` -- bit operations on strings, excitations and their signs;
* :mod:`.keys` -- string ranks, determinant keys, key sets (bit set, hash table);
* :mod:`.elements` -- Slater-Condon matrix elements and determinant diagonals;
* :mod:`.external` -- the external space determinant by determinant (sorted lists or dense accumulators);
* :mod:`.tables` -- per-string excitation tables (:class:`StringTables`) and their kernels (small FCI spaces);
* :mod:`.variational` -- H in the variational space and the Davidson sigma vector;
* :mod:`.spin` -- S^2 and spin partners;
* :mod:`.heatbath` -- the heat-bath screened external space (large FCI spaces).

The three external-space strategies of ``rung.sci.pt2`` are :mod:`.external`, :mod:`.tables` and
:mod:`.heatbath`. numba's cache (``cache=True``) checks only the source file of the kernel it loads:
after editing a helper in one module, a kernel of another module that calls it keeps its cached
machine code until the cache files (``__pycache__/*.nbi``, ``*.nbc``) are removed (the sci tests'
conftest does so when a source is newer than the cache).
"""

from .bits import (count_between, double_holes_particles, excitation_degree, flip, is_set, occupied, phase,
                   popcount, single_holes_particles, string_degree, virtual)
from .elements import (coulomb_exchange, diagonal, diagonal_jk, diagonals, diagonals_sorted_keys, matrix_element,
                       same_spin_double_element, single_element)
from .external import (any_near, collect_dense, en_sum, external_contributions, external_dense, merge_sorted_sum,
                       merge_sorted_sums, pack, selection_scores,
                       reduce_packed, reduce_packed_x, reduce_sorted)
from .heatbath import external_screened, heatbath_tables, pass_buffers, screened_bounds
from .keys import (binomial_table, bits_index, bits_prefix, det_keys, dets_from_keys, hash_table, in_bits,
                   in_table, key_bits, rank, table_shift, unrank)
from .spin import s2_matrix, s2_matvec, spin_partners
from .tables import StringTables, block_tables, external_dense_tables, string_tables, upper_rows_tables
from .variational import merge_rows, string_connections, symmetric_matvec, upper_rows_groups
