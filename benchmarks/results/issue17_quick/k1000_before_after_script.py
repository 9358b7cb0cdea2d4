import json, os, subprocess, sys
W = "/work/wt/speed-mcmc/benchmarks/_worker.py"
PY = "/work/main/.venv/bin/python"
rows = []
for r in range(2):
    for label, root in (("old", "/tmp/smc/base"), ("new", "/work/wt/speed-mcmc")):
        job = {"job": "proc", "argv": [PY, "-m", "bayes_se.cli", "fit", "--data", "/tmp/smc/re_1000.csv", "--json"]}
        env = dict(os.environ, PYTHONPATH=root)
        p = subprocess.run([PY, W, json.dumps(job)], capture_output=True, text=True, env=env, cwd=root)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        out = res.pop("output", None) or {}
        res["tau_ess"] = out.get("parameters", {}).get("tau", {}).get("ess_bulk")
        res["label"] = label
        print(json.dumps(res), flush=True)
