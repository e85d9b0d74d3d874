#!/usr/bin/env python3
"""Decoding a PNG window on a query (issue 32 item 5): frames decoded and their CPU per query, window bytes, and
whether the answers equal those of a raw-array window (300 frames of the cup clip, the shipped model, 3 queries).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_window_decode.py shipped
"""
import sys, time, torch
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent.parent))
torch.set_num_threads(1)
import cv2; cv2.setNumThreads(1)
from bench.bench_multicam_memory import camera_frames, load, NS
from stvg_ros.config import ServingConfig
from stvg_ros.stack import model_side
from stvg_ros.stream import window as W
from stvg_ros.stream.service import GroundingService
from stvg_ros.stream.requests import GroundingRequest
import numpy as np
grounder, gcfg, label = load(sys.argv[1] if len(sys.argv) > 1 else "shipped", 2)
res = {}
for codec in ("none", "png"):
    svc = GroundingService(ServingConfig(window_codec=codec))
    svc.configure(ServingConfig(window_codec=codec), model_side=model_side(grounder, gcfg))
    svc.start(grounder, threaded=False)
    for i, f in enumerate(camera_frames("camera", 0, 300, np.random.default_rng(0))):
        svc.ingest(10 * NS + int(i * NS / 30), lambda f=f: f, "cam")
    stats = [0, 0.0]
    real = W.unpack
    def counted(d):
        t = time.process_time(); r = real(d); stats[1] += time.process_time() - t
        stats[0] += not isinstance(d, np.ndarray); return r
    W.unpack = counted
    for q in range(3):
        answers = []
        t = time.process_time()
        svc.submit(GroundingRequest(f"q{q}", "the small red circle that moves left"), answers.append)
        svc.run_pending()
        cpu = time.process_time() - t
    W.unpack = real
    a = answers[0]
    res[codec] = (a.tube.found, a.tube.start_ns, a.tube.end_ns, a.tube.boxes)
    print(label, codec, f"window {svc.window.nbytes/2**20:.1f} MiB; 3 queries: {stats[0]} frames decoded, "
          f"{1e3*stats[1]/3:.1f} ms decode CPU per query, last query CPU {cpu:.2f} s", flush=True)
    svc.stop()
print("same answers:", res["none"] == res["png"])
