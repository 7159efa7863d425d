"""Controllers that make the simulated cluster behave like a real one (workloads, scheduling, kubelets, GC...)."""
