import sys, os, json, tempfile
sys.argv = ["run.py"]; sys.path.insert(0, os.getcwd())
import run
P = {81: "/tmp/smc/re_81.csv", 1000: "/tmp/smc/re_1000.csv"}
dirs = {i: tempfile.mkdtemp(prefix=f"bench_pytensor_{i}_") for i in ("bayes_se", "floor")}
for k, runs in ((81, 3), (1000, 1)):
    for r in range(runs):
        cache = "cold" if (k == 81 and r == 0) else "warm"
        for impl in ("floor", "bayes_se"):
            argv = ([run.PY, os.path.join(run.HERE, "floor_pymc.py"), P[k]] if impl == "floor"
                    else run._cli("fit", "--data", P[k], "--json"))
            row = run._proc(argv, compiledir=dirs[impl], row=f"mcmc_k{k}", impl=impl, cache=cache, repeat=r)
            print(json.dumps({x: row.get(x) for x in ("row", "impl", "cache", "repeat", "proc_s", "child_cpu_s", "rc", "ess_tau", "child_maxrss_mb")}), flush=True)
