"""What each ``gpunn bench`` mode measures: the full run, ``--quick`` (< 3 minutes on 2 cores)
and ``--smoke`` (seconds; CI checks the JSON, never the speed)."""

BIG = [784, 1024, 1024, 10]
SMALL = [784, 256, 256, 10]
ALL_BATCHES = [1, 8, 32, 64, 128, 256, 512, 1024, 2048, None]

PROFILES = {
    "full": {
        "kernel_sizes": [1e5, 1e6, 1e7], "kernel_rounds": 9, "kernel_sample_s": 0.03,
        "ceiling_bytes": 400e6, "ceiling_rounds": 9,
        "peer_sizes": BIG, "peer_batches": [32, 64, 128, 256, 512, 1024, 2048],
        "peer_rounds": 7, "peer_sample_s": 0.1,
        "vec_logreg_rows": 2000, "vec_mlp_rows": 256, "vec_mlp_sizes": SMALL, "vec_rounds": 5,
        "sweeps": [
            {"data": "digits", "sizes": [64, 256, 256, 10], "batches": ALL_BATCHES,
             "budget_s": 2.0, "max_epochs": 60, "eval_rows": 1797},
            {"data": "synthetic", "sizes": SMALL, "batches": ALL_BATCHES, "budget_s": 6.0,
             "max_epochs": 10, "eval_rows": 5000},
            {"data": "synthetic", "sizes": BIG, "batches": ALL_BATCHES, "budget_s": 10.0,
             "max_epochs": 5, "eval_rows": 3000},
        ],
        "gpu_sizes": [1e5, 1e6, 1e7], "gpu_step_batches": [32, 128, 512, 2048],
    },
    "quick": {
        "kernel_sizes": [1e5, 1e6, 1e7], "kernel_rounds": 7, "kernel_sample_s": 0.02,
        "ceiling_bytes": 400e6, "ceiling_rounds": 5,
        "peer_sizes": BIG, "peer_batches": [32, 128, 512, 2048],
        "peer_rounds": 5, "peer_sample_s": 0.05,
        "vec_logreg_rows": 1000, "vec_mlp_rows": 128, "vec_mlp_sizes": SMALL, "vec_rounds": 5,
        "sweeps": [
            {"data": "digits", "sizes": [64, 256, 256, 10], "batches": [1, 8, 64, 512, None],
             "budget_s": 1.0, "max_epochs": 30, "eval_rows": 1797},
            {"data": "synthetic", "sizes": SMALL, "batches": [1, 32, 256, 2048, None],
             "budget_s": 2.0, "max_epochs": 3, "eval_rows": 2000},
        ],
        "gpu_sizes": [1e5, 1e6, 1e7], "gpu_step_batches": [32, 128, 512, 2048],
    },
    "smoke": {
        "kernel_sizes": [1e4], "kernel_rounds": 3, "kernel_sample_s": 0.002,
        "ceiling_bytes": 8e6, "ceiling_rounds": 3,
        "peer_sizes": [64, 32, 32, 10], "peer_batches": [32], "peer_rounds": 3,
        "peer_sample_s": 0.002,
        "vec_logreg_rows": 64, "vec_mlp_rows": 16, "vec_mlp_sizes": [64, 16, 10],
        "vec_rounds": 3,
        "sweeps": [
            {"data": "digits", "sizes": [64, 16, 10], "batches": [1, 64, None],
             "budget_s": 0.1, "max_epochs": 2, "eval_rows": 500},
            {"data": "synthetic", "n": 2000, "sizes": [784, 16, 10], "batches": [32, None],
             "budget_s": 0.1, "max_epochs": 1, "eval_rows": 500},
        ],
        "gpu_sizes": [1e4], "gpu_step_batches": [32],
    },
}
