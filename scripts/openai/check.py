"""Bonsai's /v1 door as the official `openai` Python client sees it (run by scripts/test-openai.sh against a
live `bonsai serve` with a tiny model installed): models, chat completions (whole and streamed), errors, API
keys, and a fine-tuning job from an uploaded file to a deployed model that answers chat completions. Each
check asserts; the first failure ends the run."""

import json
import os
import sys
import time

import httpx
import openai
from openai import OpenAI

URL = os.environ["BONSAI_URL"]
FAQ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "demo", "faq.jsonl")
# Steps of the fine-tuning check: 40 epochs of the 20 FAQ records, the whole set a step (a bounded run on CPU).
FINE_TUNING_EPOCHS = int(os.environ.get("BONSAI_OPENAI_EPOCHS", "40"))
http = httpx.Client(base_url=URL, timeout=60)


def native(method, path, token, **kwargs):
    response = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
    return response


def login():
    response = http.post("/api/auth/login", json={"username": "admin", "password": os.environ["BONSAI_ADMIN_PASSWORD"]})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def deployed_model(token):
    response = native("POST", "/api/models", token, json={"name": "demo", "base_model_id": "demo-tiny"})
    assert response.status_code == 201, response.text
    model_id = response.json()["id"]
    for _ in range(600):
        model = native("GET", f"/api/models/{model_id}", token).json()
        if model.get("status") != "exporting":
            break
        time.sleep(0.2)
    assert model["status"] == "ready", model
    assert native("POST", f"/api/models/{model_id}/deploy", token, json={}).status_code == 200
    for _ in range(300):
        if native("GET", f"/api/models/{model_id}", token).json().get("deployed"):
            return model_id
        time.sleep(0.1)
    raise AssertionError("the model was not deployed")


def last_answer(token):
    """The newest question of the history once it is decided (the view follows the answer by milliseconds)."""
    for _ in range(100):
        item = native("GET", "/api/qa/history", token).json()["items"][0]
        if item["status"] != "pending":
            return item
        time.sleep(0.05)
    raise AssertionError("the newest question stayed pending")


def main():
    token = login()
    deployed_model(token)
    client = OpenAI(base_url=f"{URL}/v1", api_key=token, max_retries=0)

    ids = sorted(m.id for m in client.models.list())
    assert ids == ["demo", "demo:1"], ids
    print("models.list:", ids)

    completion = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "What is Bonsai?"}], max_tokens=12, temperature=0
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str), completion
    assert choice.finish_reason in ("stop", "length"), choice.finish_reason
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert last_answer(token)["answer"] == choice.message.content
    print("chat (whole):", repr(choice.message.content), completion.usage)

    stream = client.chat.completions.create(
        model="demo:1",
        messages=[{"role": "user", "content": "Tell me about training"}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    text = "".join(pieces)
    assert usage is not None and usage.completion_tokens > 0, usage
    assert finish in ("stop", "length"), finish
    assert last_answer(token)["answer"] == text, (last_answer(token), text)
    print("chat (streamed):", len(pieces), "pieces,", repr(text), usage)

    conversation = client.chat.completions.create(
        model="demo",
        messages=[
            {"role": "system", "content": "You answer about Bonsai."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How do I deploy a model?"},
        ],
        max_tokens=8,
    )
    assert conversation.choices[0].message.content is not None
    assert last_answer(token)["question"] == "How do I deploy a model?"
    print("conversation with a system message: answered")

    try:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "Hi"}])
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.code == "model_not_found", e
    print("unknown model: 404 model_not_found")

    try:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}], n=2)
        raise AssertionError("n=2 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.param == "n", e
    print("n=2: 400, param n")

    try:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=0)
        raise AssertionError("max_tokens=0 was accepted")
    except openai.BadRequestError as e:
        assert e.param == "max_tokens", e
    print("max_tokens=0: 400, param max_tokens")

    try:
        OpenAI(base_url=f"{URL}/v1", api_key="not-a-token", max_retries=0).models.list()
        raise AssertionError("a bad token was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    print("bad token: 401")

    keys = native("POST", "/api/users/profile/api-keys", token, json={"name": "openai check"})
    assert keys.status_code == 201, keys.text
    key = keys.json()
    with_key = OpenAI(base_url=f"{URL}/v1", api_key=key["secret"], max_retries=0)
    assert [m.id for m in with_key.models.list()], "the key lists the models"
    assert native("DELETE", f"/api/users/profile/api-keys/{key['id']}", token).status_code == 204
    try:
        with_key.models.list()
        raise AssertionError("a revoked key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    print("API key: works, then 401 once revoked")

    fine_tune(client)
    print("all OpenAI client checks passed")


def fine_tune(client):
    """A file uploaded for fine-tuning, a job on it followed through its events, and its model in a chat."""
    with open(FAQ, "rb") as f:
        uploaded = client.files.create(file=("faq.jsonl", f), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.status == "processed", uploaded
    assert client.files.retrieve(uploaded.id).bytes == os.path.getsize(FAQ)
    assert uploaded.id in [f.id for f in client.files.list()]
    print("files.create:", uploaded.id, uploaded.status)
    # A validation file (three of the FAQ's records): evaluated on, its loss in the metrics events.
    with open(FAQ, "rb") as f:
        three = b"".join(f.readlines()[:3])
    validation = client.files.create(file=("valid.jsonl", three), purpose="fine-tune")
    assert validation.status == "processed", validation

    job = client.fine_tuning.jobs.create(
        model="demo-tiny",
        training_file=uploaded.id,
        validation_file=validation.id,
        suffix="faq",
        hyperparameters={"n_epochs": FINE_TUNING_EPOCHS, "batch_size": "auto", "learning_rate_multiplier": "auto"},
    )
    assert job.id.startswith("ftjob-") and job.status in ("queued", "running"), job
    print("fine_tuning.jobs.create:", job.id, job.status, job.hyperparameters)
    seen, deadline = set(), time.time() + 900
    while True:
        fresh = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=50) if e.id not in seen]
        for event in reversed(fresh):
            seen.add(event.id)
            if event.type != "metrics" or event.data.get("step", 0) % 10 == 0:
                print("  event:", event.level, event.message)
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        assert time.time() < deadline, f"the job did not finish in time: {job}"
        time.sleep(1)
    assert job.status == "succeeded", job
    assert job.fine_tuned_model and job.fine_tuned_model.startswith("ft:demo-tiny:faq:"), job
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert metrics, "metrics events"
    assert any(e.data.get("valid_loss") is not None for e in metrics), "the validation file's loss"
    assert job.validation_file == validation.id, job
    assert job.trained_tokens and job.trained_tokens > 0, job
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints], "checkpoints"
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    print("fine_tuning.jobs: succeeded,", job.fine_tuned_model, [c.step_number for c in checkpoints],
          "trained_tokens", job.trained_tokens)

    with open(FAQ) as f:
        record = json.loads(f.readline())
    question, expected = record["question"], record["answer"]
    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": question}], max_tokens=32, temperature=0
    )
    content = answer.choices[0].message.content
    assert isinstance(content, str) and answer.model == job.fine_tuned_model, answer
    print("chat with the fine-tuned model:", repr(question), "->", repr(content), "(expected", repr(expected) + ")")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED:", e, file=sys.stderr)
        raise
