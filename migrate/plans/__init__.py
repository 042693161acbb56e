"""Wave plans: the planner, the plan file schema and its validation."""
