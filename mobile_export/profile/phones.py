"""Per-phone latency ESTIMATES (placeholder while being written)."""
FEATURES = ("dense_gmacs", "dw_gmacs", "mbytes", "ops")


def features(ops, byte_scale: float = 1.0) -> dict:
    """Workload features from per-op rows: dense and depthwise GMACs, MB moved, op count."""
    return {"dense_gmacs": sum(o["macs"] for o in ops if o["kind"] == "dense") / 1e9,
            "dw_gmacs": sum(o["macs"] for o in ops if o["kind"] == "depthwise") / 1e9,
            "mbytes": byte_scale * sum(o["bytes"] for o in ops) / 1e6,
            "ops": float(len(ops))}
