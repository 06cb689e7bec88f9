"""``holder.toml``: the operator's configuration of a holder directory, read and written here.

A holder directory holds everything the service persists::

    D/holder.toml      this configuration (policy, listen address, TLS paths)
    D/holder.db        SQLite store: audit log, consents, model lookup tables, sessions,
                       feature-load history (WAL mode; see :mod:`fedcredit.holder.store`)
    D/features/        the current feature table, one Parquet file per load
    D/tls/             development certificates made by ``fedcredit holder init``

The file is written from a commented template (no TOML writer needed) and read with
``tomllib`` (``tomli`` on Python 3.10). Unknown keys are errors: a misspelt policy knob
must never be silently ignored.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto import MIN_SECURE_BITS
from ..errors import InvalidInput
from ..protocol.policy import BANK_NAME, HolderPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "holder.toml"
DB_NAME = "holder.db"
FEATURES_DIR = "features"
TLS_DIR = "tls"


@dataclass
class HolderConfig:
    """A parsed ``holder.toml``; paths are absolute (relative ones are taken from ``dir``)."""

    dir: Path
    name: str = "credit-data-holder"
    listen: str = "127.0.0.1:50051"
    tls_dir: Path = Path(TLS_DIR)
    max_workers: int = 16
    max_calls_per_bank: int = 8
    first_message_seconds: float = 30.0
    idle_stream_seconds: float = 60.0
    shutdown_grace_seconds: float = 5.0
    log_format: str = "json"  # "json" or "text"
    log_level: str = "info"
    feature_labels: dict[str, str] = field(default_factory=dict)
    feature_types: dict[str, str] = field(default_factory=dict)
    policy: HolderPolicy = field(default_factory=lambda: HolderPolicy(allowed_banks=()))
    #: the portal's consent API: host:port, "" = off (see fedcredit.holder.admin)
    admin_listen: str = ""
    admin_tls: bool = True
    stats_industry_column: str = "industry"
    stats_type_column: str = "enterprise_type"
    #: where PSI and the holder's batch crypto run: "local" (worker processes) or "dask"
    engine_kind: str = "local"
    engine_scheduler: str = ""  # "" with "dask": a LocalCluster of engine_workers
    engine_workers: int = 0  # 0: every core
    engine_cert: str = "holder"  # <cert>.pem/.key in tls.dir, for a tls:// scheduler

    @property
    def engine_spec(self) -> str:
        """What :func:`fedcredit.crypto.engine.engine_scope` takes."""
        return self.engine_scheduler or self.engine_kind

    @property
    def db_path(self) -> Path:
        return self.dir / DB_NAME

    @property
    def features_dir(self) -> Path:
        return self.dir / FEATURES_DIR


# -- writing ----------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(items) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def render(name: str, listen: str, tls_dir: str, banks: list[str] | None,
           purposes: tuple[str, ...] = ("credit",)) -> str:
    """The text of a new ``holder.toml`` (every knob present, with its meaning)."""
    if banks is None:
        bank_line = ('allowed_banks = []          # certificate common names (CN) of the banks '
                     'served; ["*"] = any bank whose certificate your CA signed')
    else:
        bank_line = (f"allowed_banks = {_toml_list(banks)}  # certificate common names (CN); "
                     '["*"] = any bank whose certificate your CA signed')
    return f"""# fedcredit holder configuration. Paths are relative to this file's directory.
# Policy changes take effect at `fedcredit holder policy reload --dir D` (or SIGHUP to
# the server), without a restart; the other sections when `fedcredit holder serve` restarts.

[holder]
name = {_toml_str(name)}           # shown to banks
listen = {_toml_str(listen)}        # host:port; 0.0.0.0:50051 to serve other machines

[tls]
# ca.pem (the CA that signs bank certificates), holder.pem and holder.key (this server).
dir = {_toml_str(tls_dir)}

[server]
max_workers = 16                # concurrent Exchange calls (health always has threads of its own)
max_calls_per_bank = 8          # concurrent Exchange calls of one bank
first_message_seconds = 30      # a stream that sends nothing for this long is ended
idle_stream_seconds = 60        # ... and so is silence inside a stream
shutdown_grace_seconds = 5      # on SIGTERM: running calls get this long to finish
log_format = "json"             # "json" (one object per line) or "text" (key=value)
log_level = "info"

[policy]
{bank_line}
allowed_purposes = {_toml_list(purposes)}
min_node_samples = 20           # no aggregate ever describes fewer enterprises
max_trees_per_session = 200
max_sessions_per_day = 100      # per bank, per UTC day (0 = no cap); scoring not counted
max_trees_per_day = 2000        # per bank, per UTC day (0 = no cap)
max_concurrent_sessions = 16
max_sessions_per_bank = 8       # open sessions of one bank: the others keep their share
session_idle_seconds = 1800     # an idle session is dropped (its memory freed) after this
max_predict_ids = 1000000       # enterprises per scoring request
max_psi_points = 20000000       # ids a bank may send for one alignment
max_session_mib = 8192          # ciphertexts one session may hold
min_key_bits = 2048             # smallest key (bits of n) a bank may send
max_key_bits = 4096             # largest key: its size sets the memory and CPU a session costs
allow_insecure_keys = false     # must be true for min_key_bits below 2048 (tests only)
min_bin_samples = 30            # SecureBoost: fewest enterprises between two known thresholds
max_tree_depth = 10             # SecureBoost: deepest tree a bank may grow
max_learning_rate = 1.0         # hetero LR: largest learning rate for the holder's weights
max_scored_per_day = 100000     # distinct enterprises scored per bank, purpose, UTC day (0: none)
min_private_path_bits = 32      # private scoring: models that hide the path less are refused
allow_plain_scoring = true      # false: SecureBoost models are scored privately only

# Least and necessary data: the columns each bank ("*" = any) may use per purpose ("*" =
# any). Without this table every served bank may use every column; with it, a bank and
# purpose no entry matches may use none. A model trained on a column later removed here
# refuses to score.
# [policy.columns."demo-bank"]
# credit = ["tax_arrears", "social_insurance_arrears", "utility_arrears_flag"]
# [policy.columns."*"]
# credit = ["tax_credit_rating"]

[admin]
# The platform portal's consent API (HTTP JSON, its own bearer token; see
# `fedcredit holder admin token`). Empty listen = off.
listen = ""                     # host:port, e.g. "127.0.0.1:8600"
tls = true                      # HTTPS with the holder's server certificate (tls.dir)

[stats]
# Columns of the feature table that `fedcredit holder stats` groups by (region comes from
# the USCC, characters 3-8); a missing column is reported as "unknown".
industry_column = "industry"
type_column = "enterprise_type"

[engine]
# Where PSI and the holder's batch crypto run: "local" (this machine's worker processes) or
# "dask": a Dask scheduler (scheduler = "tls://host:8786", reached with <cert>.pem/.key from
# tls.dir, a certificate for both server and client use), or with no scheduler a
# LocalCluster of `workers` processes (0 = every core) on this machine.
kind = "local"
scheduler = ""
workers = 0
cert = "holder"

[features]
# Published names of feature columns (column name in your file = name banks see).
# Changing a name breaks models trained under the old one.
[features.labels]

# Column kinds ("numeric" or "categorical"); a column not listed keeps the kind of the
# previous load, or is inferred on its first load.
[features.types]
"""


# -- reading ----------------------------------------------------------------------------------
_SECTIONS = {
    "holder": {"name", "listen"},
    "tls": {"dir"},
    "server": {"max_workers", "max_calls_per_bank", "first_message_seconds",
               "idle_stream_seconds", "shutdown_grace_seconds", "log_format", "log_level"},
    "policy": set(HolderPolicy.keys()),
    "features": {"labels", "types"},
    "admin": {"listen", "tls"},
    "stats": {"industry_column", "type_column"},
    "engine": {"kind", "scheduler", "workers", "cert"},
}


def load_config(directory) -> HolderConfig:
    """Read and check ``D/holder.toml``.

    Raises
    ------
    InvalidInput
        The directory was never initialised, the file is not TOML, or a key is unknown,
        of the wrong type or out of range (the message names the key).
    """
    d = Path(directory).resolve()
    path = d / CONFIG_NAME
    if not path.is_file():
        raise InvalidInput(f"{d} is not a holder directory (no {CONFIG_NAME}); run "
                           f"`fedcredit holder init --dir {directory}` first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: not valid TOML: {e}") from None
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise InvalidInput(f"{path}: unknown section [{section}]")
        if not isinstance(value, dict):
            raise InvalidInput(f"{path}: {section} must be a table")
        unknown = set(value) - _SECTIONS[section]
        if unknown:
            raise InvalidInput(f"{path}: unknown key {section}.{sorted(unknown)[0]}")
    h, t, s = raw.get("holder", {}), raw.get("tls", {}), raw.get("server", {})
    p, f = raw.get("policy", {}), raw.get("features", {})
    adm, st = raw.get("admin", {}), raw.get("stats", {})
    cfg = HolderConfig(dir=d)
    cfg.name = _str(h, "name", cfg.name, path, "holder")
    cfg.listen = _str(h, "listen", cfg.listen, path, "holder")
    if ":" not in cfg.listen:
        raise InvalidInput(f"{path}: holder.listen must be host:port, got {cfg.listen!r}")
    tls = Path(_str(t, "dir", TLS_DIR, path, "tls"))
    cfg.tls_dir = tls if tls.is_absolute() else d / tls
    cfg.max_workers = _int(s, "max_workers", cfg.max_workers, path, "server", 1, 1024)
    cfg.max_calls_per_bank = _int(s, "max_calls_per_bank", min(cfg.max_calls_per_bank,
                                                               cfg.max_workers),
                                  path, "server", 1, 1024)
    cfg.first_message_seconds = _num(s, "first_message_seconds", cfg.first_message_seconds,
                                     path, "server", 1, 3600)
    cfg.idle_stream_seconds = _num(s, "idle_stream_seconds", cfg.idle_stream_seconds, path,
                                   "server", 1, 86400)
    cfg.shutdown_grace_seconds = _num(s, "shutdown_grace_seconds", cfg.shutdown_grace_seconds,
                                      path, "server", 0, 3600)
    cfg.log_format = _str(s, "log_format", cfg.log_format, path, "server")
    if cfg.log_format not in ("json", "text"):
        raise InvalidInput(f"{path}: server.log_format must be \"json\" or \"text\"")
    cfg.log_level = _str(s, "log_level", cfg.log_level, path, "server").lower()
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise InvalidInput(f"{path}: server.log_level must be debug, info, warning or error")
    cfg.policy = _policy(p, path)
    cfg.admin_listen = adm.get("listen", "")
    if not isinstance(cfg.admin_listen, str) or (cfg.admin_listen and ":" not in
                                                 cfg.admin_listen):
        raise InvalidInput(f"{path}: admin.listen must be host:port or \"\" (off)")
    cfg.admin_tls = adm.get("tls", True)
    if not isinstance(cfg.admin_tls, bool):
        raise InvalidInput(f"{path}: admin.tls must be true or false")
    cfg.stats_industry_column = _str(st, "industry_column", cfg.stats_industry_column, path,
                                     "stats")
    cfg.stats_type_column = _str(st, "type_column", cfg.stats_type_column, path, "stats")
    _engine(cfg, raw.get("engine", {}), path)
    cfg.feature_labels = _str_map(f.get("labels", {}), path, "features.labels")
    cfg.feature_types = _str_map(f.get("types", {}), path, "features.types")
    bad = {k: v for k, v in cfg.feature_types.items() if v not in ("numeric", "categorical")}
    if bad:
        k = sorted(bad)[0]
        raise InvalidInput(f"{path}: features.types.{k} must be \"numeric\" or \"categorical\"")
    published = list(cfg.feature_labels.values())
    if len(set(published)) != len(published):
        raise InvalidInput(f"{path}: features.labels gives two columns the same name")
    return cfg


def _policy(p: dict, path: Path) -> HolderPolicy:
    """``[policy]`` -> HolderPolicy; a missing ``allowed_banks`` serves no bank."""
    kw: dict = {}
    banks = p.get("allowed_banks", [])
    if not isinstance(banks, list) or not all(isinstance(b, str) for b in banks):
        raise InvalidInput(f"{path}: policy.allowed_banks must be a list of strings")
    if "*" in banks:
        if len(banks) != 1:
            raise InvalidInput(f"{path}: policy.allowed_banks: \"*\" stands alone")
        kw["allowed_banks"] = None
    else:
        for b in banks:
            if not BANK_NAME.fullmatch(b):
                raise InvalidInput(f"{path}: policy.allowed_banks: {b!r} is not a certificate "
                                   "common name of [A-Za-z0-9._-]")
        kw["allowed_banks"] = tuple(banks)
    purposes = p.get("allowed_purposes", ["credit"])
    if not isinstance(purposes, list) or not all(isinstance(x, str) and x for x in purposes):
        raise InvalidInput(f"{path}: policy.allowed_purposes must be a list of non-empty strings")
    kw["allowed_purposes"] = tuple(purposes)
    d = HolderPolicy()
    sec = "policy"
    for key, lo, hi in (("min_node_samples", 1, 10**9), ("max_trees_per_session", 1, 10**6),
                        ("max_sessions_per_day", 0, 10**9), ("max_trees_per_day", 0, 10**9),
                        ("max_concurrent_sessions", 1, 10**5),
                        ("max_sessions_per_bank", 1, 10**5), ("max_predict_ids", 1, 10**9),
                        ("max_psi_points", 1, 10**10), ("max_session_mib", 1, 10**7),
                        ("min_bin_samples", 0, 10**9), ("max_tree_depth", 1, 64),
                        ("max_scored_per_day", 0, 10**10)):
        kw[key] = _int(p, key, getattr(d, key), path, sec, lo, hi)
    kw["session_idle_seconds"] = _num(p, "session_idle_seconds", d.session_idle_seconds, path,
                                      sec, 1, 10**7)
    kw["min_private_path_bits"] = _num(p, "min_private_path_bits", d.min_private_path_bits,
                                       path, sec, 0, 4096)
    kw["max_learning_rate"] = _num(p, "max_learning_rate", d.max_learning_rate, path, sec,
                                   1e-9, 1e3)
    kw["min_key_bits"] = _int(p, "min_key_bits", MIN_SECURE_BITS, path, sec, 256, 16384)
    kw["max_key_bits"] = _int(p, "max_key_bits", d.max_key_bits, path, sec, 1024, 16384)
    insecure = p.get("allow_insecure_keys", False)
    if not isinstance(insecure, bool):
        raise InvalidInput(f"{path}: policy.allow_insecure_keys must be true or false")
    kw["allow_insecure_keys"] = insecure
    plain = p.get("allow_plain_scoring", True)
    if not isinstance(plain, bool):
        raise InvalidInput(f"{path}: policy.allow_plain_scoring must be true or false")
    kw["allow_plain_scoring"] = plain
    if "columns" in p:
        kw["columns"] = p["columns"]
    try:
        return HolderPolicy(**kw)
    except InvalidInput as e:
        raise InvalidInput(f"{path}: {e}") from None


def _engine(cfg: HolderConfig, e: dict, path: Path) -> None:
    cfg.engine_kind = _str(e, "kind", cfg.engine_kind, path, "engine")
    if cfg.engine_kind not in ("local", "dask"):
        raise InvalidInput(f"{path}: engine.kind must be \"local\" or \"dask\"")
    cfg.engine_scheduler = e.get("scheduler", "")
    if not isinstance(cfg.engine_scheduler, str):
        raise InvalidInput(f"{path}: engine.scheduler must be a string")
    if cfg.engine_scheduler and (cfg.engine_kind != "dask" or not cfg.engine_scheduler
                                 .startswith(("tcp://", "tls://"))):
        raise InvalidInput(f"{path}: engine.scheduler must be tcp://host:port or "
                           "tls://host:port, with engine.kind = \"dask\"")
    cfg.engine_workers = _int(e, "workers", 0, path, "engine", 0, 4096)
    cfg.engine_cert = _str(e, "cert", cfg.engine_cert, path, "engine")


def _str(d: dict, key: str, default: str, path: Path, sec: str) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v:
        raise InvalidInput(f"{path}: {sec}.{key} must be a non-empty string")
    return v


def _int(d: dict, key: str, default: int, path: Path, sec: str, lo: int, hi: int) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInput(f"{path}: {sec}.{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _num(d: dict, key: str, default: float, path: Path, sec: str, lo: float, hi: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise InvalidInput(f"{path}: {sec}.{key} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _str_map(d, path: Path, where: str) -> dict[str, str]:
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                          for k, v in d.items()):
        raise InvalidInput(f"{path}: [{where}] must map column names to non-empty strings")
    return dict(d)
