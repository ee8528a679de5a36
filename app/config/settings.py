"""Typed settings, read once at start-up and passed down (never imported as a global)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.config.legacy_ini import LegacyIniSource
from app.config.queue import QueueSettings as QueueSettings
from app.config.queue import WorkerSettings as WorkerSettings


def is_loopback_host(host: str) -> bool:
    """Whether a host reaches this machine alone: localhost or a loopback address (an IPv6 one with or without its
    brackets); any other name, or a wildcard like 0.0.0.0, does not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DbSettings(BaseModel):
    # None means: an SQLite file in the data folder.
    url: str | None = None
    # Kept apart from the URL as a secret (never shown in settings dumps or logs); it fills the URL's password.
    password: SecretStr | None = None
    echo: bool = False
    auto_migrate: bool = True


def _web_ports() -> list[int | Literal["*"]]:
    return [80, 443]


class FetchSettings(BaseModel):
    cdn_base: str | None = None
    # Hosts absolute URLs may point at, besides the cdn_base host; "*" allows any public host.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Hosts that may resolve to private/loopback/link-local addresses (tests, local deployments).
    allow_private_hosts: list[str] = Field(default_factory=list)
    # Ports URLs may name, besides the cdn_base's own; "*" allows any. An allowed host is a web server, not its
    # neighbours on other ports (a Redis on the CDN's machine).
    allowed_ports: list[int | Literal["*"]] = Field(default_factory=_web_ports)
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    max_redirects: int = 3
    concurrency: int = 16


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, as a container's CPU set limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DecodeSettings(BaseModel):
    max_pixels: int = 40_000_000
    # What one decode may allocate for formats decoded at full size (PNG, WebP, GIF, BMP): 64 MiB is about
    # 10 megapixels of RGBA. JPEG is decoded at the size used, so only max_pixels bounds it.
    max_decoded_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    # The CPU pool for decoding and verification; each task runs OpenCV single-threaded, so that concurrent
    # requests, not one request's internals, share the cores. One thread per core: the pool runs the oldest
    # check's tasks first (app/runtime/oldest_first.py), and a thread more than cores only takes turns with them
    # (measured: docs/benchmark-history.md).
    threads: int = Field(default_factory=_usable_cores, ge=1)
    opencv_threads: int = Field(1, ge=0, description="0: OpenCV's own default (all cores per call)")
    # Verification's descriptor matching is a matrix product: one BLAS thread per task, as for OpenCV (OpenBLAS
    # threads of two concurrent tasks on two cores made it 4x slower than single-threaded).
    blas_threads: int = Field(1, ge=0, description="0: the BLAS library's own default (all cores per call)")
    # The pool's threads yield the cores to the event loop's (Linux): the loop holds the GIL while it runs Python,
    # and a loop thread descheduled while holding it stalls every pool thread that needs it for a moment.
    pool_niceness: int = Field(10, ge=0, le=19, description="nice value of the CPU pool's threads (0: as the rest)")


class EmbedderSettings(BaseModel):
    kind: Literal["local_cnn", "dashscope"] = "local_cnn"
    # local_cnn
    image_size: int = 224
    # Small batches run faster on CPU than large ones (cache-bound): 4 measured best on 2 cores.
    batch_size: int = 4
    # One thread: under concurrent load the CPU pool (decode, verification) needs the other core.
    # (`torch_threads` is its name from before the ONNX Runtime default.)
    threads: int = Field(1, ge=1, validation_alias=AliasChoices("threads", "torch_threads"))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # On the CPU: ONNX Runtime on the same weights, the same vectors, faster than PyTorch (docs/benchmark.md). A GPU
    # always runs PyTorch (the ONNX Runtime installed is the CPU build).
    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    # ONNX Runtime runs the network quantised to 8 bits, 7-bit weights (app/adapters/lite0_int8.py): about 1.8x
    # faster with AVX-512 VNNI, a little slower with AVX2 alone, the same vectors on both; other vectors than float32
    # (model name ...-int8w7: a database indexed by another model refuses to start on it). PyTorch computes float32.
    precision: Literal["int8", "float32"] = "int8"
    # Where ONNX Runtime's graph is kept between starts, keyed by what it is made of (None: `cache` in the data
    # folder). Several data folders on one machine may share one.
    graph_cache_dir: Path | None = None
    # dashscope
    api_key: SecretStr | None = None
    model: str = "multimodal-embedding-v1"
    dimension: int = 1024
    base_url: str = "https://dashscope.aliyuncs.com/api/v1"
    rate_limit_rpm: float = Field(120, gt=0, description="per process: with N processes on one quota, quota / N")
    concurrency: int = Field(8, ge=1)
    request_timeout_s: float = Field(30, gt=0)
    max_attempts: int = Field(5, ge=1)
    # auto: a URL the cloud can fetch (not a private host) goes as the URL, anything else as a data: URI
    send_urls: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _complete(self) -> EmbedderSettings:
        if self.kind == "dashscope" and (self.api_key is None or not self.api_key.get_secret_value()):
            raise ValueError("the dashscope embedder needs APP_EMBEDDER__API_KEY (or [dashscope] api_key)")
        return self


class BlobSettings(BaseModel):
    """Where thumbnails and previews are kept: files in a folder (the data directory's `blobs/` unless `path`
    says), or the database. `auto`: files with the embedded index, the database with a shared one (several
    machines then see the same bytes)."""

    kind: Literal["auto", "files", "database"] = "auto"
    path: Path | None = None
    # The scheduler removes blobs no row names (a crash between a blob and its row) this often, first at start,
    # in the background: listing the folder grows with the library, so it never holds up a start.
    sweep_every_hours: float = Field(24.0, gt=0)


class IndexSettings(BaseModel):
    kind: Literal["local", "dashvector"] = "local"
    snapshot: bool = True
    # local: exact flat search up to this many vectors, IVF (8-bit) beyond (bench/index_sweep.py)
    ivf_min_vectors: int = Field(20_000, ge=1000)
    # dashvector
    api_key: SecretStr | None = None
    endpoint: str | None = None
    collection: str = "imgdedup"
    create_collection: bool = True
    timeout_s: float = Field(10, gt=0)
    max_attempts: int = Field(5, ge=1)
    concurrency: int = Field(8, ge=1)
    # A shared index is eventually consistent: acceptances younger than this are also compared exactly from
    # the database, under a database lock (docs/design.md §5).
    visibility_window_s: float = Field(60, ge=0)
    # At start, acceptances of the last hours are checked against the shared index (crash repair).
    reconcile_hours: float = Field(24, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> IndexSettings:
        if self.kind == "dashvector":
            missing = [
                name
                for name, value in (("APP_INDEX__API_KEY", self.api_key), ("APP_INDEX__ENDPOINT", self.endpoint))
                if not value
            ]
            if missing:
                raise ValueError(f"the dashvector index needs {' and '.join(missing)} (or the [dashvector] section)")
        return self


class PolicySettings(BaseModel):
    """Thresholds: None means 'not set here', so lower-precedence sources apply (docs/design.md §8)."""

    phash_threshold: int | None = None
    duplicate_threshold: float | None = None
    review_threshold: float | None = None
    top_k: int = 5
    # Beyond this many accepted images a pHash hit alone is no longer trusted (docs/design.md §1.4): the
    # embedding decides.
    phash_alone_max_index: int = 200_000

    @model_validator(mode="after")
    def _ordered(self) -> PolicySettings:
        if (
            self.duplicate_threshold is not None
            and self.review_threshold is not None
            and self.review_threshold > self.duplicate_threshold
        ):
            raise ValueError("policy.review_threshold must not exceed policy.duplicate_threshold")
        return self


class LegacySettings(BaseModel):
    """What only the old scripts' config.ini says; it ranks below environment variables (docs/design.md §8)."""

    config_ini: Path | None = None
    phash_threshold: int | None = None
    # A similarity (1 - cosine distance) tuned for DashScope: the duplicate threshold only for that embedder.
    vector_threshold: float | None = None
    # The old scripts' DashVector collection (config.ini [dashvector] collection_name): `backfill --adopt` reads
    # its vectors. imgdedup's own index is another collection (APP_INDEX__COLLECTION).
    collection: str | None = None


class VerifySettings(BaseModel):
    """Pairwise verification of grey-band candidates (docs/design.md §1.7)."""

    enabled: bool = True
    min_inliers: int = Field(15, ge=4)
    min_base_coverage: float = Field(0.20, ge=0, le=1)
    reject_below_inliers: int = Field(8, ge=0)
    query_side: int = Field(512, ge=128, le=1024, description="longest side of the query when verified")
    max_disagreement: float = Field(
        0.36, ge=0, le=1, description="share of the aligned overlap that may look different and still confirm"
    )
    min_overlap: float = Field(
        0.3, ge=0, le=1, description="share of the base the aligned query must cover to confirm (a piece is review)"
    )
    feature_cache: int = Field(4096, ge=0, description="base images whose local features are kept in memory")
    refine: bool = Field(
        True,
        description="verify a pair again on fine-scale features when the halved detection leaves it in doubt with "
        "5 or more inliers (off: the halved detection alone decides)",
    )
    smooth: bool = Field(
        True,
        description="confirm a copy of a base too smooth for keypoints (a gradient wallpaper) when the two, aligned "
        "by their intensities, agree in their details at a correlation of 0.9 or more (off: keypoints alone confirm)",
    )
    second_look: bool = Field(
        True, description="embed and verify the picture inside a frame (screenshot, border) when still in doubt"
    )
    screen_states: bool = Field(
        True,
        description="compare a screen-like image (a window, a dialog) pixel by pixel with what would make it a "
        "duplicate: one that differs in a small change only (a box ticked, a value) is another state, `review`",
    )
    sub_crops: bool = Field(
        True,
        description="the second look also embeds three fixed parts (centre, top corners) of a doubtful image that "
        "looks framed: finds a picture inside a busy frame (a web page, a phone feed); three more embedding calls",
    )
    local_candidates: int = Field(
        3,
        ge=0,
        le=20,
        description="accepted images sharing the most visual words (SIFT) with an image still in doubt, verified "
        "whatever their cosine: finds a picture inside a busy page or under several edits; 0 turns it off",
    )
    part_words: bool = Field(
        True,
        description="when the second look confirms nothing, each fixed part of a framed image is searched by its "
        "own visual words and its closest image verified (with local_candidates > 0 and sub_crops): finds a small "
        "picture on a busy page; one SIFT detection per part",
    )
    part_words_parts: int = Field(
        1,
        ge=1,
        le=3,
        description="how many fixed parts the parts' words search, in turn: the centre, then the top-left and the "
        "top-right corner (each one SIFT detection more for a framed image still in doubt)",
    )
    locate: bool = Field(
        True,
        description="the second look also finds where the closest candidate of the image and of each part sits "
        "inside the image (template matching of its sketch) and compares that cut by cosine and pHash: finds a "
        "smooth picture without keypoints on a busy page; one embedding per candidate",
    )


class ApiSettings(BaseModel):
    """Keys live in the database (`python -m app keys add|list|revoke`); with none, the service is open to this
    machine alone (it binds loopback only)."""

    # Requests per minute per key, unless the key says otherwise; over it: 429 with Retry-After.
    rate_limit_per_minute: int = Field(600, ge=1)
    # How often the keys are read again: a new or revoked key takes effect within this time.
    keys_refresh_seconds: float = Field(5.0, ge=0)
    # The review page's session cookie: signed with this secret (None: one made once and kept in the data
    # folder; several processes behind one address need the same one), valid this long, HTTPS-only if set.
    session_secret: SecretStr | None = None
    session_hours: float = Field(12, gt=0)
    # Secure (HTTPS only, the __Host- name) unless said otherwise; None: Secure unless the service listens on
    # loopback alone, where the page is reached as http://127.0.0.1 and no network lies between.
    secure_cookies: bool | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    # The body of any other request (JSON, the review page's forms): read only after the key is checked, and small.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # Swagger UI at /docs loads its script from a CDN, on the origin of the review page: off unless asked for.
    # /openapi.json is always served.
    docs: bool = False
    # How often the gauges /metrics serves are read from the database (in the background, not per scrape).
    metrics_refresh_seconds: float = Field(15.0, gt=0)
    # Checks one process works on at once through the API; more are answered 429 with Retry-After at once,
    # instead of queueing their uploads in memory.
    max_checks_in_flight: int = Field(32, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APP_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_file: Path | None = None
    # text, or one JSON object a line (with each record's fields: an access line's method, path, status, ms)
    log_format: Literal["text", "json"] = "text"
    # one line per request (method, path without its query, status, milliseconds, client address)
    access_log: bool = False
    db: DbSettings = Field(default_factory=DbSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    legacy: LegacySettings = Field(default_factory=LegacySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables override the old config.ini, which overrides the defaults.
        return init_settings, env_settings, LegacyIniSource(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def database_url(self) -> str:
        url = self.db.url or f"sqlite+aiosqlite:///{self.data_dir / 'imgdedup.db'}"
        if self.db.password is None or not self.db.password.get_secret_value():
            return url
        scheme, _, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        user = authority.rpartition("@")[0].split(":", 1)[0] if "@" in authority else ""
        host = authority.rpartition("@")[2]
        password = quote(self.db.password.get_secret_value(), safe="")
        return f"{scheme}://{user}:{password}@{host}{slash}{path}"

    @property
    def listens_on_loopback_only(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def secure_cookies(self) -> bool:
        if self.api.secure_cookies is not None:
            return self.api.secure_cookies
        return not self.listens_on_loopback_only

    @property
    def graph_cache_dir(self) -> Path:
        return self.embedder.graph_cache_dir or self.data_dir / "cache"

    @property
    def blob_dir(self) -> Path | None:
        """The blob store's folder, or None where the bytes stay in the database."""
        kind = self.blobs.kind
        if kind == "database" or (kind == "auto" and self.index.kind != "local"):
            return None
        return self.blobs.path or self.data_dir / "blobs"

    @property
    def thresholds_file(self) -> Path:
        return self.data_dir / "thresholds.json"
