"""``FitResult``: what a fit returns, how it prints, predicts and bootstraps itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from msl.fit.display import (STDERR_TOO_LARGE, UNDETERMINED, format_aicc,  # noqa: F401
                             format_interval, format_param, format_pm,
                             why_undetermined)

COND_LIMIT = 1e8  # cond(J) with unit-norm columns; cond(J^T J) = 1e16 is double precision's end


@dataclass(frozen=True)
class FitResult:
    """One fitted law.

    ``params``/``stderr`` map public parameter names to floats (stderr: one standard error, from
    the Jacobian covariance, or from the bootstrap for Huber fits); ``cov`` is the covariance of the
    public parameters in the order of ``params`` (None where it could not be computed); ``ci`` maps
    names to (lo, hi) bootstrap percentile intervals after ``bootstrap()``. ``aicc`` uses the
    unweighted linear-space residual sum of squares ``rss`` (see ``msl.fit.select.aicc``);
    ``loss`` is the minimised objective in the fit's own residual space. ``poorly_determined`` is
    True, with ``reason``, when the data do not pin the parameters down; ``undetermined`` maps
    each parameter they do not pin down to why (``diagnose``), and ``shown(name)`` is how every
    table, legend and sentence prints a parameter (``msl.fit.display.format_param``).
    """

    form: str
    params: dict
    stderr: dict
    cov: np.ndarray | None = field(compare=False)
    aicc: float
    rss: float
    loss: float
    n_points: int
    poorly_determined: bool
    reason: str
    converged: bool
    space: str
    n_starts: int = 0
    n_near_best: int = 0
    cond: float = math.inf
    ci: dict | None = None
    level: float | None = None
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict = field(default_factory=dict)
    undetermined: dict = field(default_factory=dict)
    _form: object = field(default=None, repr=False, compare=False)
    _theta: np.ndarray = field(default=None, repr=False, compare=False)
    _X: np.ndarray = field(default=None, repr=False, compare=False)
    _y: np.ndarray = field(default=None, repr=False, compare=False)
    _sigma: np.ndarray | None = field(default=None, repr=False, compare=False)
    _options: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, *, form, theta, cov_internal, cond, loss, converged, rss, X, y, sigma,
              options, n_starts, n_near_best):
        from msl.fit.select import aicc as aicc_of

        pub = form.to_public(theta)
        cov = None if cov_internal is None else _to_public_cov(form, theta, cov_internal)
        stderr = _stderr(form.params, cov)
        reasons, undetermined = diagnose(form, theta, pub, cov, cond, converged, X)
        return cls(form=form.name, params=dict(zip(form.params, map(float, pub))),
                   stderr=stderr, cov=cov, aicc=aicc_of(rss, y.size, form.n_params), rss=rss,
                   loss=float(loss), n_points=int(y.size), poorly_determined=bool(reasons),
                   reason="; ".join(reasons), undetermined=undetermined,
                   converged=bool(converged), space=options["space"],
                   n_starts=n_starts, n_near_best=n_near_best, cond=float(cond), _form=form,
                   _theta=np.asarray(theta, float), _X=X, _y=y, _sigma=sigma, _options=options)

    @property
    def n_params(self) -> int:
        return len(self.params)

    def why_undetermined(self, name: str) -> str | None:
        """Why parameter ``name`` cannot be quoted as a number, or None when it can."""
        return why_undetermined(self.params[name], self.stderr.get(name, math.nan),
                                self.undetermined.get(name))

    def shown(self, name: str) -> str:
        """Parameter ``name`` as every table and sentence shows it: ``"0.46 ± 0.03"`` rounded to
        its standard error, or ``"undetermined (<why>)"``."""
        return format_param(self.params[name], self.stderr.get(name, math.nan),
                            self.undetermined.get(name))

    def stated(self, name: str, label: str | None = None, why: bool = True) -> str:
        """``"alpha = 0.46 ± 0.03"`` or ``"alpha undetermined (<why>)"``, for sentences and
        legends; ``label`` replaces the parameter's name; ``why=False`` leaves out the reason
        (for legends, where the table beside the figure gives it)."""
        label = name if label is None else label
        if self.why_undetermined(name) is None:
            return f"{label} = {self.shown(name)}"
        return f"{label} {self.shown(name) if why else UNDETERMINED}"

    def predict(self, *x) -> np.ndarray:
        """Predicted loss at ``x`` (1D forms) or at ``(n_params, n_train)`` (2D forms)."""
        arrays = np.broadcast_arrays(*[np.asarray(v, float) for v in x])
        X = np.column_stack([a.ravel() for a in arrays])
        return self._form.predict(self._theta, X).reshape(arrays[0].shape)

    def band(self, *x, level: float = 0.95):
        """(lo, hi) pointwise ``level`` band of the prediction at ``x``, or None.

        From the bootstrap refits when ``bootstrap()`` was run (percentiles of their predictions),
        otherwise from the covariance by the delta method (normal quantile).
        """
        arrays = np.broadcast_arrays(*[np.asarray(v, float) for v in x])
        X = np.column_stack([a.ravel() for a in arrays])
        shape = arrays[0].shape
        q = (1 - level) / 2
        if self.boot is not None:
            internal = np.where(self._form.log_params, np.log(np.abs(self.boot)), self.boot)
            preds = np.array([self._form.predict(th, X) for th in internal])
            lo, hi = np.nanpercentile(preds, [100 * q, 100 * (1 - q)], axis=0)
            return lo.reshape(shape), hi.reshape(shape)
        if self.cov is None:
            return None
        from scipy.stats import norm

        d = np.where(self._form.log_params, np.asarray(list(self.params.values())), 1.0)
        cov_int = self.cov / np.outer(d, d)
        with np.errstate(all="ignore"):
            out, jac = self._form.model(self._theta[None], X, True)
        se = np.sqrt(np.einsum("pn,pq,qn->n", jac[0], cov_int, jac[0]))
        z = norm.ppf(1 - q)
        if self._form.log_output:  # the band of log L, exponentiated: never below zero
            return np.exp(out[0] - z * se).reshape(shape), np.exp(out[0] + z * se).reshape(shape)
        return (out[0] - z * se).reshape(shape), (out[0] + z * se).reshape(shape)

    def bootstrap(self, n: int = 1000, seed: int = 0, level: float = 0.95,
                  groups=None) -> "FitResult":
        """A copy with ``level`` percentile intervals ``ci`` from ``n`` resamples of whole runs.

        ``groups`` labels points that belong to one run (e.g. checkpoints of one training run) so
        that they are drawn together. Huber fits also take ``cov``/``stderr`` from the bootstrap
        (as Besiroglu et al. did). Deterministic for a given ``seed``; no global random state.
        """
        from msl.fit.core import bootstrap_thetas

        thetas = bootstrap_thetas(self, n, seed, groups)
        pub = self._form.to_public(thetas)
        pub = pub[np.all(np.isfinite(pub), axis=1)]
        if pub.shape[0] < 2:
            raise RuntimeError(f"{self.form}: fewer than 2 bootstrap refits succeeded")
        q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
        bounds = np.percentile(pub, q, axis=0)
        ci = {k: (float(bounds[0, j]), float(bounds[1, j])) for j, k in enumerate(self.params)}
        changes = dict(ci=ci, level=level, boot=pub,
                       extra={**self.extra, "n_boot_ok": int(pub.shape[0]), "n_boot": n})
        if self._options.get("delta") is not None:
            cov = np.cov(pub.T)
            reasons, undetermined = diagnose(self._form, self._theta,
                                             self._form.to_public(self._theta), cov, self.cond,
                                             self.converged, self._X)
            changes.update(cov=cov, stderr=_stderr(self._form.params, cov),
                           poorly_determined=bool(reasons), reason="; ".join(reasons),
                           undetermined=undetermined)
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """A flat, JSON-ready row: form, n, AICc, flags, and per parameter value, stderr, CI."""
        row = {"form": self.form, "n_points": self.n_points, "aicc": self.aicc,
               "rss": self.rss, "poorly_determined": self.poorly_determined,
               "reason": self.reason}
        for k, v in self.params.items():
            row[k] = v
            row[f"{k}_stderr"] = self.stderr.get(k, math.nan)
            row[f"{k}_undetermined"] = self.why_undetermined(k) or ""
            if self.ci is not None:
                row[f"{k}_lo"], row[f"{k}_hi"] = self.ci[k]
        return row

    def summary(self) -> str:
        """Readable lines: the form and fit quality, then ``name = value ± stderr [ci]`` (or
        ``name = undetermined (why)``, without a confidence interval)."""
        head = (f"{self.form}: n = {self.n_points}, AICc = {format_aicc(self.aicc)}, "
                f"space = {self.space}")
        if self.poorly_determined:
            head += f"  [POORLY DETERMINED: {self.reason}]"
        lines = [head]
        for k in self.params:
            line = f"  {k} = {self.shown(k)}"
            if self.ci is not None and self.why_undetermined(k) is None:
                lo, hi = self.ci[k]
                line += (f"  {100 * self.level:.0f}% CI "
                         f"{format_interval(lo, hi, self.stderr.get(k, math.nan))}")
            lines.append(line)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _to_public_cov(form, theta, cov_internal):
    """Delta method: d(public)/d(internal) is exp(theta) for log parameters, 1 otherwise."""
    d = np.where(form.log_params, np.exp(np.where(form.log_params, theta, 0.0)), 1.0)
    return cov_internal * np.outer(d, d)


def _stderr(names, cov):
    if cov is None:
        return {k: math.nan for k in names}
    diag = np.diag(cov)
    return {k: float(np.sqrt(v)) if v >= 0 else math.nan for k, v in zip(names, diag)}


def diagnose(form, theta, pub, cov, cond, converged, X) -> tuple[list[str], dict[str, str]]:
    """Why a fit should not be trusted: (reasons, {parameter: why it is undetermined}).

    Whole-fit reasons make every parameter undetermined: the optimiser did not converge, no
    degrees of freedom are left, or the Jacobian is near-singular. Per parameter: a standard
    error at least its magnitude (scales too: their error is that of exp(log scale)), or a value
    on its bound. The form's own checks (``Form.check``) return either text, for the whole fit,
    or ``(names, text)`` for those parameters (e.g. a break outside the data: the break and the
    slope on the side without data). No reason quotes the digits of an undetermined value (they
    differ from machine to machine); an empty list means none were found.
    """
    reasons, per = [], {name: [] for name in form.params}

    def whole(text, short=None):
        reasons.append(text)
        for name in form.params:
            per[name].append(short or text)

    if not converged:
        whole("optimiser did not converge")
    if X.shape[0] <= form.n_params:
        whole("no degrees of freedom left for an uncertainty", "no degrees of freedom")
    elif not cond <= COND_LIMIT:
        whole(f"near-singular Jacobian (condition number above {COND_LIMIT:.0e})",
              "near-singular Jacobian")
    if cov is not None:
        var = np.diag(cov)
        for j, name in enumerate(form.params):
            se = math.sqrt(var[j]) if var[j] >= 0 else math.nan
            if not se < abs(pub[j]):
                reasons.append(f"{name} undetermined ({STDERR_TOO_LARGE})")
                per[name].append(STDERR_TOO_LARGE)
    lo = -np.inf if form.lower is None else np.asarray(form.lower)
    hi = np.inf if form.upper is None else np.asarray(form.upper)
    for j, name in enumerate(form.params):
        if np.isclose(theta[j], np.broadcast_to(lo, theta.shape)[j], atol=1e-9) or np.isclose(
                theta[j], np.broadcast_to(hi, theta.shape)[j], atol=1e-9):
            reasons.append(f"{name} on its bound")
            per[name].append("on its bound")
    for item in form.check(theta, X):
        if isinstance(item, str):
            whole(item)
        else:
            names, text = item
            reasons.append(text)
            for name in names:
                per[name].append(text)
    undetermined = {k: "; ".join(dict.fromkeys(v)) for k, v in per.items() if v}
    return reasons, undetermined
