"""The trained PPAD (:class:`PPAD`): model directory I/O (:mod:`simxray.io.modeldir`),
encoding event lists to latents, rates and light curves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .eventfile import EventList
from .ppad_data import (
    Prepared,
    _gauss_legendre,
    collate,
    prepare,
)
from .ppad_field import (
    PPADConfig,
    PPADField,
)
from .ppad_init import (
    LatentInit,
    binned_summary,
    period_search,
    summary_dim,
)
from .ppad_loss import (
    grid_batch,
    optimise_latents,
    optimise_latents_grid,
)

# --------------------------------------------------------------------------- model container

#: the model-directory kind (:data:`simxray.io.modeldir.FORMATS`): format "simxray-ppad", version 2
FORMAT_KIND = "ppad"
FORMAT = "simxray-ppad"
#: older format names still read (version 1: no weights checksum)
LEGACY_FORMATS = {"simxray-ppad-1": 1}


class PPAD:
    """A trained PPAD: the field, its config and (optionally) the amortised initialiser and a
    reference set of latents (for anomaly scores)."""

    def __init__(self, cfg: PPADConfig, field_: PPADField | None = None, init: LatentInit | None = None,
                 meta: dict | None = None, reference: dict[str, np.ndarray] | None = None,
                 device: str | torch.device | None = None):
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.field = (field_ or PPADField(cfg)).to(self.device)
        self.init = init.to(self.device) if init is not None else None
        self.meta = meta or {}
        self.reference = reference or {}

    # ---------------------------------------------------------------- persistence
    def save(self, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write a model directory (:mod:`simxray.io.modeldir`): ``weights.safetensors``, then
        ``config.json`` with the weights' sha256."""
        from ..io.modeldir import prefixed, save_model_dir

        tensors = prefixed(field=self.field.state_dict(), init=self.init.state_dict() if self.init else {},
                           reference={k: torch.as_tensor(np.asarray(v)) for k, v in self.reference.items()})
        meta = dict(self.meta)
        meta.update(extra or {})
        doc = {"config": asdict(self.cfg), "init": self.init is not None,
               "init_hidden": self.init.net[0].out_features if self.init is not None else None,
               "reference": sorted(self.reference), **meta}
        return save_model_dir(out_dir, tensors, doc, FORMAT_KIND)

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None, device: str | torch.device | None = None) -> PPAD:
        """Load a saved model (default: the shipped one in ``simxray/data/ppad_default``); the
        weights' sha256 is verified, any problem is a one-line :class:`ModelDirError`."""
        from ..io.modeldir import ModelDirError, group, load_model_dir, load_state

        d = Path(model_dir) if model_dir is not None else default_model_dir()
        doc, tensors = load_model_dir(d, FORMAT_KIND, required=("config",), accept=LEGACY_FORMATS,
                                      what="a PPAD model directory written by 'simxray train-ppad'")
        try:
            cfg = PPADConfig.from_dict(doc["config"])
            field_ = PPADField(cfg)
            init = LatentInit(summary_dim(cfg), cfg.latent_dim, int(doc.get("init_hidden") or 128)) \
                if doc.get("init") else None
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelDirError(f"cannot rebuild the network ({exc})", path=str(d / "config.json")) from None
        load_state(field_, group(tensors, "field"), d / "weights.safetensors")
        if init is not None:
            load_state(init, group(tensors, "init"), d / "weights.safetensors")
        ref = {k: v.numpy() for k, v in group(tensors, "reference").items()}
        skip = ("format", "format_version", "weights_sha256", "config", "init", "init_hidden", "reference")
        meta = {k: v for k, v in doc.items() if k not in skip}
        model = cls(cfg, field_, init, meta, ref, device)
        model.field.eval()
        return model

    # ---------------------------------------------------------------- inference
    def prepare(self, events: Sequence[EventList]) -> list[Prepared]:
        return [prepare(e, self.cfg) for e in events]

    def initial_latents(self, items: Sequence[Prepared]) -> torch.Tensor:
        """Amortised z0 (zeros when the model has no initialiser; the periodic head's three
        latents from :func:`period_search`)."""
        if self.init is None:
            z = torch.zeros(len(items), self.cfg.latent_dim, device=self.device)
        else:
            x = torch.from_numpy(binned_summary(items, self.cfg)).to(self.device)
            with torch.no_grad():
                z = self.init(x)
        if self.cfg.periodic_head:                            # head latents from the period search
            z[:, :3] = torch.from_numpy(period_search(items)).to(z)
        return z

    def encode(self, events: Sequence[EventList] | Sequence[Prepared], *, steps: int = 30, lr: float = 0.05,
               batch_size: int = 256, max_events: int | None = None, seed: int = 0,
               progress: bool = False, use_init: bool = True, method: str = "grid",
               workers: int | None = None) -> EncodeResult:
        """Latents for event lists: network frozen, z optimised by Adam (batched, cosine lr).

        ``method="grid"`` (default) evaluates the loss on the interpolation grid from histogrammed
        events (:func:`grid_loss`: all events, cost independent of their number, deterministic);
        ``method="events"`` uses the event-level training loss (:func:`source_loss`) on up to
        ``max_events`` events per source (default the config's; a random subsample drawn from
        ``seed`` above that).  Batches (data preparation included) run in ``workers`` Python
        threads (default 1); torch's own thread count is the caller's (with several workers,
        one torch thread each is fastest: the CLI sets ``torch.set_num_threads(1)`` and
        passes ``--threads`` as ``workers``).  A source's latent does not depend on the
        batching or the number of workers (up to float rounding).
        With the periodic head, z₀ stays at the period search's value (:func:`period_search`).
        """
        if method not in ("grid", "events"):
            raise ValueError(f"method must be 'grid' or 'events', got {method!r}")
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        events = list(events)
        max_events = self.cfg.max_events if max_events is None else max_events
        workers = max(1, 1 if workers is None else int(workers))
        self.field.eval()
        for p in self.field.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            table = self.field.grid_basis()
        S = len(events)
        z_all = np.zeros((S, self.cfg.latent_dim), np.float32)
        loss_all = np.zeros(S, np.float32)
        items: list[Prepared | None] = [e if isinstance(e, Prepared) else None for e in events]
        size = [e.n_events if isinstance(e, Prepared) else e.time.size for e in events]
        order = np.argsort(size, kind="stable")             # batches of similar size
        if workers > 1 and S > 1:
            batch_size = min(batch_size, -(-S // workers))
        bar = tqdm(total=S, disable=not progress, unit="src", desc="encode")

        def one(sel: np.ndarray) -> None:
            for i in sel:                                    # data preparation inside the worker
                if items[i] is None:
                    items[i] = prepare(events[i], self.cfg)
            chunk = [items[i] for i in sel]
            z0 = self.initial_latents(chunk) if use_init else torch.zeros(len(chunk), self.cfg.latent_dim,
                                                                           device=self.device)
            if method == "grid":
                gb = grid_batch(chunk, self.cfg, device=self.device)
                z, loss = optimise_latents_grid(self.field, gb, self.cfg, z0, steps=steps, lr=lr, table=table)
            else:
                batch = collate(chunk, max_events, None, self.device, seed=seed)
                z, loss = optimise_latents(self.field, batch, self.cfg, z0, steps=steps, lr=lr, table=table)
            z_all[sel] = z.cpu().numpy()
            loss_all[sel] = loss.cpu().numpy()
            bar.update(len(chunk))

        batches = [order[i:i + batch_size] for i in range(0, S, batch_size)]
        try:
            if workers > 1 and len(batches) > 1 and self.device.type == "cpu":
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(one, batches))
            else:
                for sel in batches:
                    one(sel)
        finally:
            bar.close()
            for p in self.field.parameters():
                p.requires_grad_(True)
        return EncodeResult(z_all, np.array([p.scale for p in items]), loss_all,
                            np.array([p.tstart for p in items]), np.array([p.span for p in items]),
                            np.array([p.n_events for p in items]))

    def rates(self, z: np.ndarray | torch.Tensor, tau: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalised rates ρ (S, P, n_bands) at normalised times τ (P,) or (S, P)."""
        z = torch.as_tensor(np.asarray(z, np.float32), device=self.device).reshape(-1, self.cfg.latent_dim)
        tau = torch.as_tensor(np.asarray(tau, np.float32), device=self.device)
        if tau.ndim == 1:
            tau = tau.expand(z.shape[0], -1)
        with torch.no_grad():
            return self.field(tau, z).cpu().numpy()

    def light_curve(self, enc: EncodeResult, index: int, times: np.ndarray) -> np.ndarray:
        """Rate (counts/s) per band (n_t, n_bands) of source ``index`` at times t (s)."""
        tau = (np.asarray(times, np.float64) - enc.tstart[index]) / enc.span[index]
        return enc.scale[index] * self.rates(enc.z[index], tau)[0]

    def binned_light_curve(self, enc: EncodeResult, index: int, t_edges: np.ndarray, order: int = 8
                           ) -> np.ndarray:
        """Mean rate (counts/s) per band in time bins ``t_edges`` (s), Gauss-Legendre per bin."""
        x, w = _gauss_legendre(order)
        lo, hi = np.asarray(t_edges[:-1]), np.asarray(t_edges[1:])
        t = (0.5 * (lo + hi))[:, None] + (0.5 * (hi - lo))[:, None] * x
        r = self.light_curve(enc, index, t.ravel()).reshape(len(lo), order, -1)
        return 0.5 * np.einsum("nkb,k->nb", r, w)

    def log_likelihood(self, enc: EncodeResult, events: Sequence[EventList], *, quad_sub: int = 256,
                       batch_size: int = 64) -> np.ndarray:
        """Exact log-likelihood per event of ``events[i]`` under the rate of latent ``enc.z[i]``
        (with ``enc.scale[i]``, so a model fitted on one half of a thinned list can be scored on
        the other half).  Rates in counts/s; quadrature with ``quad_sub`` sub-intervals."""
        cfg = PPADConfig(**{**asdict(self.cfg), "quad_sub": quad_sub, "quad_order": 8})
        out = np.zeros(len(events))
        for start in range(0, len(events), batch_size):
            chunk = [prepare(e, cfg, allow_empty=True) for e in events[start:start + batch_size]]
            for k, p in enumerate(chunk):       # evaluate on the fitted source's time axis
                i = start + k
                p.tau = ((p.tau * p.span + p.tstart - enc.tstart[i]) / enc.span[i]).astype(np.float32)
                p.qt = ((p.qt * p.span + p.tstart - enc.tstart[i]) / enc.span[i]).astype(np.float32)
            b = collate(chunk, None, None, self.device)
            z = torch.as_tensor(enc.z[start:start + len(chunk)], device=self.device)
            n = b.tau.shape[1]
            with torch.no_grad():
                rho = self.field(torch.cat([b.tau, b.qt], 1), z)
            r_i = torch.gather(rho[:, :n], 2, b.band[..., None]).squeeze(-1)
            scale = torch.as_tensor(enc.scale[start:start + len(chunk)], device=self.device, dtype=torch.float32)
            expo = torch.as_tensor([p.exposure for p in chunk], device=self.device, dtype=torch.float32)
            sum_log = (torch.log(r_i.double() * scale[:, None] + 1e-300) * b.mask).sum(1)
            integ = (rho[:, n:].sum(-1) * b.qw).sum(1) * scale * expo
            out[start:start + len(chunk)] = ((sum_log - integ) / b.n_used.clamp_min(1)).cpu().numpy()
        return out


@dataclass
class EncodeResult:
    """Latents and the per-source normalisation: rate (counts/s) = scale · ρ(τ | z)."""

    z: np.ndarray          # (S, d)
    scale: np.ndarray      # (S,) N/E counts/s
    loss: np.ndarray       # (S,) final loss per event (normalised units)
    tstart: np.ndarray     # (S,) s
    span: np.ndarray       # (S,) s
    n_events: np.ndarray   # (S,)

    def subset(self, idx) -> EncodeResult:
        return EncodeResult(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def default_model_dir() -> Path:
    """The shipped pre-trained encoder (``simxray/data/ppad_default``)."""
    return Path(__file__).resolve().parent.parent / "data" / "ppad_default"
