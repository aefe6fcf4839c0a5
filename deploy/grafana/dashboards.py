#!/usr/bin/env python3
"""Writes Bonsai's Grafana dashboards (dashboards/*.json) from the short descriptions below, so that the panels
stay consistent and the metric names stay in one readable place. Run it after changing a panel:
`python3 deploy/grafana/dashboards.py`. Every metric used must be one `/metrics` exposes (scripts/check-ops.sh
checks the JSON against a running node)."""
import json
import os

DS = {"type": "prometheus", "uid": "prometheus"}


def panel(title, exprs, unit="short", kind="timeseries", width=12, legend=None):
    """A panel of one or more PromQL expressions (as (expr, legend) pairs or plain strings)."""
    targets = []
    for i, e in enumerate(exprs):
        expr, fmt = (e if isinstance(e, tuple) else (e, legend or ""))
        targets.append({"datasource": DS, "expr": expr, "legendFormat": fmt, "refId": chr(65 + i)})
    return {"type": kind, "title": title, "datasource": DS, "targets": targets, "width": width,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {}}


def dashboard(uid, title, description, panels):
    x = y = 0
    laid = []
    for i, p in enumerate(panels):
        w = p.pop("width")
        h = 5 if p["type"] == "stat" else 8
        if x + w > 24:
            x, y = 0, y + 8
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        p["id"] = i + 1
        x += w
        laid.append(p)
    return {"uid": uid, "title": title, "description": description, "tags": ["bonsai"], "timezone": "browser",
            "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": []}, "annotations": {"list": []}, "panels": laid}


DASHBOARDS = [
    dashboard("bonsai-api", "Bonsai / API", "Requests per route: rate, errors, latency; rate limiting.", [
        panel("Requests per second by route", [('sum by (route) (rate(bonsai_http_requests_total[5m]))', "{{route}}")], "reqps"),
        panel("5xx per second by route", [('sum by (route) (rate(bonsai_http_requests_total{status=~"5.."}[5m]))', "{{route}}")], "reqps"),
        panel("Error ratio by node (5xx)", [('sum by (instance) (rate(bonsai_http_requests_total{status=~"5.."}[5m])) / sum by (instance) (rate(bonsai_http_requests_total[5m]))', "{{instance}}")], "percentunit"),
        panel("4xx per second by status", [('sum by (status) (rate(bonsai_http_requests_total{status=~"4.."}[5m]))', "{{status}}")], "reqps"),
        panel("p99 latency by route", [('histogram_quantile(0.99, sum by (route, le) (rate(bonsai_http_request_duration_seconds_bucket[5m])))', "{{route}}")], "s"),
        panel("p50 latency by route", [('histogram_quantile(0.5, sum by (route, le) (rate(bonsai_http_request_duration_seconds_bucket[5m])))', "{{route}}")], "s"),
        panel("Requests refused by the rate limits", [('sum by (limit) (rate(bonsai_rate_limited_total[5m]))', "{{limit}}")], "reqps"),
        panel("Requests per second by node", [('sum by (instance) (rate(bonsai_http_requests_total[5m]))', "{{instance}}")], "reqps"),
    ]),
    dashboard("bonsai-pipeline", "Bonsai / Event pipeline", "Appends to the event store, the relay to NATS, the projections.", [
        panel("Events appended per second", [('max(deriv(bonsai_events[5m]))', "events/s")], "ops"),
        panel("Events in the store", [('max(bonsai_events)', "events")], "short", kind="stat", width=6),
        panel("Relay lag (events not yet on NATS)", [('max(bonsai_relay_lag_events)', "relay")], "short", kind="stat", width=6),
        panel("Relay lag", [('max(bonsai_relay_lag_events)', "events behind")], "short"),
        panel("Projection lag per projection", [('max by (projection) (bonsai_projection_lag_events)', "{{projection}}")], "short"),
    ]),
    dashboard("bonsai-training", "Bonsai / Training and models", "Training tasks, their success, models and their accuracy.", [
        panel("Training tasks by status", [('max by (status) (bonsai_training_tasks)', "{{status}}")], "short"),
        panel("Running", [('max(bonsai_training_tasks{status="running"}) or vector(0)', "running")], "short", kind="stat", width=6),
        panel("Success ratio (completed / completed + failed)", [('max(bonsai_training_success_ratio)', "success")], "percentunit", kind="stat", width=6),
        panel("Failures (last hour)", [('max(delta(bonsai_training_tasks{status="failed"}[1h]))', "failed")], "short"),
        panel("Models by status", [('max by (status, deployed) (bonsai_models)', "{{status}} deployed={{deployed}}")], "short"),
        panel("Accuracy of deployed models", [('max by (name, version) (bonsai_model_accuracy)', "{{name}} v{{version}}")], "percentunit"),
        panel("Bonsai's open alerts by kind", [('max by (kind, severity) (bonsai_alerts_active)', "{{kind}} ({{severity}})")], "short"),
    ]),
    dashboard("bonsai-serving", "Bonsai / Serving", "Questions, answers, the answer cache, time per answer, loaded models.", [
        panel("Questions by status", [('max by (status) (bonsai_qa_questions)', "{{status}}")], "short"),
        panel("Answers per second (cache and model)", [('max by (cached) (deriv(bonsai_qa_answers[5m]))', "cached={{cached}}")], "ops"),
        panel("Cache hit ratio", [('max(bonsai_qa_answers{cached="true"}) / max(sum without (cached) (bonsai_qa_answers))', "hits")], "percentunit", kind="stat", width=6),
        panel("Mean time per uncached answer", [('max(bonsai_qa_mean_response_seconds)', "mean")], "s", kind="stat", width=6),
        panel("p99 and p50 of POST /api/qa/ask", [
            ('histogram_quantile(0.99, sum by (le) (rate(bonsai_http_request_duration_seconds_bucket{route="/api/qa/ask"}[5m])))', "p99"),
            ('histogram_quantile(0.5, sum by (le) (rate(bonsai_http_request_duration_seconds_bucket{route="/api/qa/ask"}[5m])))', "p50"),
        ], "s"),
        panel("Models loaded per node", [('bonsai_serving_models_loaded', "{{instance}}")], "short"),
    ]),
    dashboard("bonsai-resources", "Bonsai / Nodes", "Resources of each node and the dependencies it reaches.", [
        panel("Nodes up", [('up{job="bonsai"}', "{{instance}} ({{role}})")], "short"),
        panel("Dependencies reached (1 = up)", [('min by (dependency) (bonsai_dependency_up)', "{{dependency}}")], "short"),
        panel("CPU busy per node", [('sum by (instance) (rate(bonsai_host_cpu_seconds_total{mode="busy"}[5m])) / sum by (instance) (rate(bonsai_host_cpu_seconds_total[5m]))', "{{instance}}")], "percentunit"),
        panel("Bonsai process CPU (cores) per node", [('rate(bonsai_process_cpu_seconds_total[5m])', "{{instance}}"), ('bonsai_host_cpus', "{{instance}} cores")], "short"),
        panel("Memory used per node", [('bonsai_host_memory_used_ratio', "{{instance}}")], "percentunit"),
        panel("Bonsai process memory per node", [('bonsai_process_resident_memory_bytes', "{{instance}}")], "bytes"),
        panel("Data disk used per node", [('bonsai_data_disk_used_ratio', "{{instance}}")], "percentunit"),
        panel("Data disk available per node", [('bonsai_data_disk_available_bytes', "{{instance}}")], "bytes"),
        panel("Database reachable (bonsai_up)", [('bonsai_up', "{{instance}}")], "short"),
        panel("Redis errors per second", [('rate(bonsai_redis_errors_total[5m])', "{{instance}}")], "ops"),
    ]),
]

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
    os.makedirs(out, exist_ok=True)
    for d in DASHBOARDS:
        with open(os.path.join(out, d["uid"] + ".json"), "w") as f:
            json.dump(d, f, indent=2)
            f.write("\n")
        print("wrote", d["uid"] + ".json")
