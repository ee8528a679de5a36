"""A DashVector server speaking the HTTP protocol of docs/cloud-apis.md (B2-B5, D2).

Every route the adapter and the official SDK (1.0.6 and 1.0.23 bodies) use; cosine scores are distances
(1 - cos); logical errors come as HTTP 200 with a negative code; an optional visibility delay makes writes
eventually consistent like the real service; faults (429/500/503) on demand.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testkit.cloud.http_server import FakeHttpServer, Request, Response

_ID = re.compile(r"^[a-zA-Z0-9_\-!@#$%+=.]{1,64}$")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{3,32}$")
MAX_DOCS = 1024
MAX_BODY = 2 * 1024 * 1024


@dataclass
class _Doc:
    vector: np.ndarray
    fields: dict[str, Any]
    visible_at: float


@dataclass
class _Collection:
    name: str
    dimension: int
    metric: str
    fields_schema: dict[str, str]
    docs: dict[str, _Doc] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        schema = {"dimension": self.dimension, "dtype": "FLOAT", "metric": self.metric, "quantize_type": ""}
        return {
            "name": self.name,
            "dimension": self.dimension,
            "dtype": "FLOAT",
            "metric": self.metric,
            "status": "SERVING",
            "fields_schema": self.fields_schema,
            "partitions": {"default": "SERVING"},
            "vectors_schema": {"proxima_vector": schema},
        }


def _envelope(output: Any = None, code: int = 0, message: str = "Success", **usage: int) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    if code == 0:
        body["output"] = output
        body["usage"] = usage
    return Response.of_json(body)


def _fail(code: int, message: str) -> Response:
    return _envelope(code=code, message=message)


class DashVectorFake:
    def __init__(self, api_key: str = "dv-test", seed: int = 7) -> None:
        self.api_key = api_key
        self.collections: dict[str, _Collection] = {}
        self.visibility_delay_s = 0.0
        self.latency_s = 0.0
        self.fault_rate = 0.0
        self.requests: list[tuple[str, str]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = FakeHttpServer(self._handle)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._server.port}"

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> DashVectorFake:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def visible_ids(self, name: str) -> set[str]:
        now = time.monotonic()
        return {i for i, d in self.collections[name].docs.items() if d.visible_at <= now}

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, request.path))
            faulty = self._rng.random() < self.fault_rate
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if request.headers.get("dashvector-auth-token") != self.api_key:
            return Response.of_json({"code": -2999, "message": "invalid api key", "request_id": ""}, 401)
        if faulty:
            status = self._rng.choice((429, 500, 503))
            return Response.of_json({"code": status, "message": "injected fault"}, status)
        if len(request.body) > MAX_BODY:
            return _fail(-2970, "request size exceeds 2 MiB")
        parts = [p for p in request.path.split("/") if p]
        if parts == ["service_version"]:
            return Response.of_json({"code": 0, "message": "", "request_id": "", "version": "1.0.0-fake"})
        if parts[:2] != ["v1", "collections"]:
            return Response.of_json({"code": -2999, "message": f"no route {request.path}"}, 404)
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return _fail(-2047, "invalid json")
        with self._lock:
            return self._route(request.method, parts[2:], body, request.query)

    def _route(self, method: str, rest: list[str], body: Any, query: dict[str, list[str]]) -> Response:
        if not rest:
            if method == "GET":
                return _envelope(sorted(self.collections))
            if method == "POST":
                return self._create(body)
        name = rest[0] if rest else ""
        collection = self.collections.get(name)
        if collection is None:
            return _fail(-2021, f"collection {name} does not exist")
        tail = rest[1:]
        if not tail:
            if method == "GET":
                return _envelope(collection.describe())
            if method == "DELETE":
                del self.collections[name]
                return _envelope()
        if tail == ["stats"] and method == "GET":
            count = str(len(collection.docs))
            return _envelope(
                {
                    "total_doc_count": count,
                    "index_completeness": 1.0,
                    "partitions": {"default": {"total_doc_count": count}},
                }
            )
        if tail == ["docs"] and method == "POST":
            return self._write(collection, body, "insert")
        if tail == ["docs"] and method == "PUT":
            return self._write(collection, body, "update")
        if tail == ["docs", "upsert"] and method == "POST":
            return self._write(collection, body, "upsert")
        if tail == ["docs"] and method == "DELETE":
            return self._delete(collection, body)
        if tail == ["docs"] and method == "GET":
            return self._fetch(collection, query)
        if tail == ["query"] and method == "POST":
            return self._query(collection, body)
        return _fail(-2999, f"unsupported {method} {'/'.join(tail)}")

    def _create(self, body: dict[str, Any]) -> Response:
        name = body.get("name", "")
        if not _NAME.match(name):
            return _fail(-2042, f"invalid collection name {name!r}")
        if name in self.collections:
            return _fail(-2025, f"collection {name} exists")
        spec = (body.get("vectors_schema") or {}).get("") or body  # 1.0.2x nests it, 1.0.6 does not
        dimension, metric = int(spec.get("dimension") or 0), str(spec.get("metric", "cosine")).lower()
        if not 2 <= dimension <= 20000:
            return _fail(-2037, f"invalid dimension {dimension}")
        if metric not in ("cosine", "euclidean", "dotproduct"):
            return _fail(-2999, f"invalid metric {metric}")
        self.collections[name] = _Collection(name, dimension, metric, body.get("fields_schema") or {})
        return _envelope()

    def _write(self, collection: _Collection, body: dict[str, Any], op: str) -> Response:
        docs = body.get("docs") or []
        if not docs:
            return _fail(-2005, "empty doc list")
        if len(docs) > MAX_DOCS:
            return _fail(-2036, f"at most {MAX_DOCS} docs per request")
        visible_at = time.monotonic() + self.visibility_delay_s
        results = []
        for doc in docs:
            doc_id = str(doc.get("id", ""))
            if not _ID.match(doc_id):
                return _fail(-2016, f"invalid primary key {doc_id!r}")
            vector = doc.get("vector")
            if vector is None:
                vector = ((doc.get("vectors") or {}).get("proxima_vector") or {}).get("vector")
            if not isinstance(vector, list) or len(vector) != collection.dimension:
                return _fail(-2019, f"vector dimension must be {collection.dimension}")
            if op == "insert" and doc_id in collection.docs:
                return _fail(-2027, f"duplicate key {doc_id}")
            if op == "update" and doc_id not in collection.docs:
                return _fail(-2024, f"key {doc_id} does not exist")
            collection.docs[doc_id] = _Doc(np.asarray(vector, np.float32), doc.get("fields") or {}, visible_at)
            results.append({"doc_op": op, "id": doc_id, "code": 0, "message": ""})
        return _envelope(results, write_units=len(results))

    def _delete(self, collection: _Collection, body: dict[str, Any]) -> Response:
        if body.get("delete_all"):
            collection.docs.clear()
            return _envelope([])
        ids = [str(i) for i in body.get("ids") or []]
        if len(ids) > MAX_DOCS:
            return _fail(-2967, f"at most {MAX_DOCS} ids per request")
        results = [{"doc_op": "delete", "id": i, "code": 0, "message": ""} for i in ids if collection.docs.pop(i, None)]
        return _envelope(results, write_units=len(results))

    def _fetch(self, collection: _Collection, query: dict[str, list[str]]) -> Response:
        ids = [i for i in ",".join(query.get("ids", [])).split(",") if i]
        if len(ids) > MAX_DOCS:
            return _fail(-2967, f"at most {MAX_DOCS} ids per request")
        now = time.monotonic()
        found = {
            i: {"id": i, "vector": [float(x) for x in d.vector], "fields": d.fields, "score": 0.0}
            for i in ids
            if (d := collection.docs.get(i)) is not None and d.visible_at <= now
        }
        return _envelope(found, read_units=len(found))

    def _query(self, collection: _Collection, body: dict[str, Any]) -> Response:
        topk = int(body.get("topk", 10))
        if not 1 <= topk <= 1024:
            return _fail(-2041, "topk must be within 1..1024")
        if body.get("filter"):
            return _fail(-2015, "this fake supports no filters")
        now = time.monotonic()
        vector = body.get("vector")
        if vector is None:
            vector = ((body.get("vectors") or {}).get("proxima_vector") or {}).get("vector")
        if vector is None and body.get("id") is not None:
            doc = collection.docs.get(str(body["id"]))
            if doc is None or doc.visible_at > now:
                return _fail(-2024, f"key {body['id']} does not exist")
            vector = doc.vector.tolist()
        if not isinstance(vector, list) or len(vector) != collection.dimension:
            return _fail(-2019, f"query vector dimension must be {collection.dimension}")
        visible = [(i, d) for i, d in collection.docs.items() if d.visible_at <= now]
        if not visible:
            return _envelope([], read_units=1)
        q = np.asarray(vector, np.float32)
        matrix = np.stack([d.vector for _, d in visible])
        if collection.metric == "cosine":
            norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
            scores = 1.0 - (matrix @ q) / np.where(norms == 0, 1.0, norms)
            order = np.argsort(scores, kind="stable")
        elif collection.metric == "euclidean":
            scores = np.linalg.norm(matrix - q, axis=1)
            order = np.argsort(scores, kind="stable")
        else:
            scores = matrix @ q
            order = np.argsort(-scores, kind="stable")
        wanted = body.get("output_fields")
        out = []
        for index in order[:topk]:
            doc_id, doc = visible[index]
            fields = doc.fields if not wanted else {k: v for k, v in doc.fields.items() if k in wanted}
            item: dict[str, Any] = {"id": doc_id, "fields": fields, "score": float(scores[index])}
            if body.get("include_vector"):
                item["vector"] = [float(x) for x in doc.vector]
            out.append(item)
        return _envelope(out, read_units=1)
