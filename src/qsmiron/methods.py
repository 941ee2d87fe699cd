"""Methods declared once: a stage lists its methods, and settings, CLI, records and report read them.

A ``Method`` is a function plus what a reader needs to know about it: its name, a label for
the methods paragraph, a one-line description, and the publication it implements (with DOI).
Its parameters are not written down anywhere else: they are the function's keyword-only
arguments, with their annotations (types, ``Literal`` choices, ``Annotated`` bounds) and
defaults. A ``Stage`` is one processing step (background field removal, say) with its
methods, its default method and the keyword-only arguments it fills from the data (a noise
map, the magnitude), which are therefore not settings.

From these declarations:

- ``Stage.settings_model()`` builds the settings block of the stage: ``method`` (one of the
  selectable methods, default ``Stage.default``) and one sub-block per method holding its
  parameters, validated strictly (unknown keys are named). In a configuration file::

      [recon.background]
      method = "pdf"
      [recon.background.pdf]
      tol = 0.01

- ``Stage.parameters(settings_block)`` gives the keyword arguments of the chosen method;
- the recon chain records them in a ``qsmiron.records.StepInfo``;
- the CLI lists the methods with their descriptions; the methods paragraph names each method
  by its ``label`` and cites it.

Declaring a method of an existing stage is one entry in the stage's tuple of methods::

    Method("lbv", lbv, label="LBV (Laplacian boundary value)",
           description="background field removal by solving Laplace's equation in the mask",
           citation="Zhou D, Liu T, Spincemaille P, Wang Y. NMR Biomed 2014;27:312-319",
           doi="10.1002/nbm.3064")

A new stage is a ``Stage`` holding such methods, plus (for a recon stage) the function that
runs it on the reconstruction state; see ``qsmiron.recon.stages``.
"""

from __future__ import annotations

import collections.abc
import inspect
import keyword
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, create_model

from qsmiron.settings_base import Settings


@dataclass(frozen=True)
class Method:
    """One method of a stage, declared once.

    Attributes
    ----------
    name : str
        The name users choose it by (``method = "pdf"``); a Python identifier.
    function : callable
        The implementation. Its keyword-only arguments are the method's parameters (less the
        stage's ``inputs``); their annotations and defaults are the settings' types and
        defaults.
    label : str
        How the methods paragraph names the method.
    description : str
        One line: what the method does (CLI help, ``qsmiron config``).
    citation : str or None
        The publication the method implements or follows; None for qsmiron's own rules.
    doi : str or None
        Its DOI (``10.xxxx/...``).
    selectable : bool
        False for a method the pipeline picks by itself (a mask given by the user), which a
        configuration cannot choose.
    """

    name: str
    function: Callable[..., Any]
    label: str
    description: str
    citation: str | None = None
    doi: str | None = None
    selectable: bool = True

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or keyword.iskeyword(self.name) or hasattr(BaseModel, self.name):
            raise ValueError(f"method name {self.name!r} must be an identifier that is not a "
                             "Python keyword nor a pydantic attribute")

    @property
    def reference(self) -> str | None:
        """Citation and DOI as one string (None without a citation)."""
        if self.citation is None:
            return None
        return f"{self.citation}, doi:{self.doi}" if self.doi else self.citation


@dataclass(frozen=True)
class Parameter:
    """A method parameter as read from the function's signature."""

    name: str
    annotation: Any
    default: Any


def _tuple_sequences(annotation: Any) -> Any:
    """``Sequence[X]`` as ``tuple[X, ...]`` (inside unions and ``Annotated`` too), so that a
    value read from a file (a list) and a default (a tuple) validate to the same type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is collections.abc.Sequence and args:
        return tuple[args[0], ...]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_tuple_sequences(a) for a in args)]  # type: ignore[return-value]
    return annotation


def keyword_parameters(function: Callable[..., Any], exclude: typing.Iterable[str] = ()) -> list[Parameter]:
    """The keyword-only parameters of ``function`` (annotations resolved), less ``exclude``."""
    excluded = set(exclude)
    hints = typing.get_type_hints(function, include_extras=True)
    out = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or name in excluded:
            continue
        if parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{function.__qualname__}: keyword-only parameter {name!r} needs a default "
                            "to be a setting (or list it among the stage's inputs)")
        out.append(Parameter(name, _tuple_sequences(hints.get(name, Any)), parameter.default))
    return out


@dataclass
class Stage:
    """A processing stage and its declared methods.

    Attributes
    ----------
    name : str
        The stage's key in the settings (``recon.<name>``) and in the records' steps.
    label : str
        How the methods paragraph names the stage ("background field removal").
    methods : tuple of Method
    default : str
        The method used when the settings do not choose one.
    inputs : tuple of str
        Keyword-only arguments the stage fills from the data (or leaves at their default for
        every dataset), e.g. a noise map: they are not settings.
    run : callable, optional
        For a reconstruction stage, ``run(state, method, parameters) -> StepResult``: how the
        stage calls its chosen method on the reconstruction state (``qsmiron.recon.stages``).
    """

    name: str
    label: str
    methods: tuple[Method, ...]
    default: str
    inputs: tuple[str, ...] = ()
    run: Callable[..., Any] | None = None
    _models: dict[str, type[Settings]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"stage {self.name!r} declares a method twice: {names}")
        if self.default not in self.selectable():
            raise ValueError(f"stage {self.name!r}: default {self.default!r} is not a selectable method")

    def method(self, name: str) -> Method:
        """The declared method called ``name`` (ValueError naming the choices otherwise)."""
        for method in self.methods:
            if method.name == name:
                return method
        raise ValueError(f"unknown {self.label} method {name!r}; choose one of {', '.join(self.selectable())}")

    def selectable(self) -> tuple[str, ...]:
        """Names of the methods a configuration may choose."""
        return tuple(m.name for m in self.methods if m.selectable)

    def method_parameters(self, name: str) -> list[Parameter]:
        """The settable parameters of method ``name`` (its keyword-only arguments, less inputs)."""
        return keyword_parameters(self.method(name).function, self.inputs)

    def method_settings_model(self, name: str) -> type[Settings]:
        """The settings block of one method: one field per parameter, the signature's default."""
        if name not in self._models:
            fields = {p.name: (p.annotation, Field(p.default)) for p in self.method_parameters(name)}
            self._models[name] = create_model(model_name(self.name, name), __base__=Settings,
                                              __module__=SETTINGS_MODULE, **fields)
        return self._models[name]

    def settings_model(self) -> type[Settings]:
        """The settings block of the stage: ``method`` and one sub-block per selectable method."""
        if "" not in self._models:
            choices = self.selectable()
            fields: dict[str, Any] = {"method": (Literal[choices], Field(  # type: ignore[valid-type]
                self.default, description=f"{self.label}: {', '.join(choices)}"))}
            for name in choices:
                sub = self.method_settings_model(name)
                fields[name] = (sub, Field(default_factory=sub, description=self.method(name).description))
            self._models[""] = create_model(model_name(self.name), __base__=Settings,
                                            __module__=SETTINGS_MODULE, **fields)
        return self._models[""]

    def parameters(self, block: Settings, method: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``method`` (default: the block's choice) from a settings block."""
        name = block.method if method is None else method  # type: ignore[attr-defined]
        self.method(name)
        sub = getattr(block, name, None)
        if sub is None:  # a method the configuration cannot choose takes its own defaults
            sub = self.method_settings_model(name)()
        return {p.name: getattr(sub, p.name) for p in self.method_parameters(name)}


SETTINGS_MODULE = "qsmiron.recon.settings"
"""Where the generated settings classes live (and are importable from, for pickling)."""


def model_name(stage: str, method: str | None = None) -> str:
    """Class name of a generated settings block: ``BackgroundSettings``, ``BackgroundPdfSettings``."""
    def title(text: str) -> str:
        return "".join(part.capitalize() for part in text.split("_"))

    return title(stage) + (title(method) if method else "") + "Settings"
