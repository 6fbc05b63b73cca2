"""`nas sweep`: many searches over settings, their storage, Pareto fronts and reports."""
