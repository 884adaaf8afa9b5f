"""Registries shared across layers: a generic name → entry table, edit families, and the edit catalog.

Methods register once, by name, and everything else looks them up: the library, the CLI's
``--list``, the studio's sliders and the tests that parametrise over every entry. Inversion
methods register in :mod:`latentshop.inversion`; edit *families* (directions, StyleSpace channel
sets, later flows) register here, because both the file readers in :mod:`latentshop.checkpoints`
(which turn an edit file into its family's object) and the front ends (which list and build edits)
need them, and neither may import the other's layer.

An edit family says which edit-file ``kind`` it reads and how an edit file's record becomes an
:class:`EditSet` — an object that names its edits, makes them at a strength and offers controls
(sliders). An :class:`EditCatalog` is the edit sets of one model; it resolves ``NAME`` by asking each
set in turn, so adding a family needs no branch anywhere else.

Like :mod:`latentshop.errors`, this module imports nothing else of latentshop's.

Example:
    >>> reg = Registry("colour")
    >>> reg.register("red", 1)
    1
    >>> reg.names(), reg.get("red")
    (['red'], 1)
    >>> reg.get("rde")
    Traceback (most recent call last):
    ...
    latentshop.errors.ConfigError: unknown colour 'rde'. Did you mean 'red'? Colours are: red
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from latentshop.errors import ConfigError, EditError

__all__ = [
    "EDIT_FAMILIES",
    "EditCatalog",
    "EditControl",
    "EditFamily",
    "EditSet",
    "Registry",
    "edit_groups",
    "register_edit_family",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in registration order; an unknown name gets a clear error with the closest match."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` as ``name`` (a second registration of a name is refused unless ``replace``)."""
        if name in self._items and not replace:
            raise ConfigError(f"a {self.what} named {name!r} is already registered")
        self._items[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (tests and plugins that register temporarily); returns its entry."""
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(self._items) or "none"
            raise ConfigError(f"unknown {self.what} {name!r}.{hint} {self.what.capitalize()}s are: {listing}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


# ---- edit families -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EditControl:
    """A control a front end may show for one catalog edit (the studio makes a slider of it)."""

    group: str  # the family's control group, e.g. "attributes", "ganspace", "stylespace"
    name: str  # the edit name the catalog makes: EditCatalog.make(G, name, strength)
    label: str  # what the person reads
    limit: float = 5.0  # strengths run from -limit to +limit


@runtime_checkable
class EditSet(Protocol):
    """What an edit family's objects offer the catalog (a direction set, a channel set, a flow)."""

    generator: str  # fingerprint of the generator it was made for

    def edit_names(self) -> list[str]:
        """Every name this set answers (aliases included)."""

    def describe(self) -> list[tuple[str, str]]:
        """``(name, what it is)`` rows for listings."""

    def make(self, G: Any, name: str, strength: float, *, layers: str | None = None, keep: Sequence[str] = ()) -> Any:
        """The edit ``name`` at ``strength``, or ``None`` when ``name`` is not this set's."""

    def controls(self) -> list[EditControl]:
        """The controls (sliders) this set offers."""


@dataclass(frozen=True)
class EditFamily:
    """One kind of edit, registered once.

    Attributes:
        name: the family's name (``"directions"``, ``"stylespace"``...).
        file_kind: the ``kind`` of the edit files it reads (``None``: it has no files).
        from_record: ``from_record(header, arrays, where, G) -> EditSet`` — an edit file's contents
            as read by :func:`latentshop.checkpoints.read_edit_file` (``where`` names the file for errors).
        builtin: ``builtin(G) -> EditSet`` for a set every model has without files (``None``: none).
        groups: ``(group, title)`` of the control groups its sets use, in display order.
        aliases: ``aliases(edit_set) -> {alias: name}``: names other sets may use for this set's
            attributes (``stylespace:smile`` follows the directions' ``smile -> happiness``).
    """

    name: str
    file_kind: str | None = None
    from_record: Callable[[Mapping[str, Any], Mapping[str, Any], str, Any], EditSet] | None = None
    builtin: Callable[[Any], EditSet] | None = None
    groups: tuple[tuple[str, str], ...] = ()
    aliases: Callable[[Any], Mapping[str, str]] | None = None


EDIT_FAMILIES: Registry[EditFamily] = Registry("edit family")


def register_edit_family(family: EditFamily) -> EditFamily:
    """Register an edit family (once, where the family is defined)."""
    return EDIT_FAMILIES.register(family.name, family)


def family_for_file_kind(kind: str) -> EditFamily | None:
    """The family that reads edit files of ``kind`` (``None``: no family does)."""
    return next((f for f in EDIT_FAMILIES if f.file_kind == kind), None)


def edit_groups() -> list[tuple[str, str]]:
    """``(group, title)`` of every registered family's control groups, in registration order."""
    out: dict[str, str] = {}
    for f in EDIT_FAMILIES:
        for g, title in f.groups:
            out.setdefault(g, title)
    return list(out.items())


class EditCatalog:
    """Every named edit of one model: its edit sets (from its edit files) plus every family's built-in set.

    ``make`` asks each set in order — file sets first, built-ins last — and the first that knows the
    name makes the edit; an unknown name gets the list of known ones and the closest match.

    Args:
        sets: edit sets read from the model's edit files (see :func:`latentshop.checkpoints.load_model`).
        G: the generator, for the families' built-in sets (``None``: no built-ins).
    """

    def __init__(self, sets: Sequence[EditSet] = (), G: Any = None):
        self.sets: list[EditSet] = list(sets)
        self.builtins: list[EditSet] = [f.builtin(G) for f in EDIT_FAMILIES if f.builtin is not None] if G is not None else []

    def family_sets(self, family: str) -> list[EditSet]:
        """The file sets of one family (e.g. every direction set)."""
        return [s for s in self.sets if getattr(s, "family", None) == family]

    def __len__(self) -> int:
        return len(self.sets)

    def names(self) -> list[str]:
        """Every edit name the model's files give (built-in schemes such as ``s:LAYER:CHANNEL`` aside)."""
        return [n for s in self.sets for n in s.edit_names()]

    def describe(self) -> list[tuple[str, str]]:
        """``(name, what it is)`` for listings, built-in schemes last."""
        return [row for s in self.sets + self.builtins for row in s.describe()]

    def controls(self) -> list[EditControl]:
        """Every control the model's edit sets offer, in catalog order."""
        return [c for s in self.sets for c in s.controls()]

    def aliases(self) -> dict[str, str]:
        """Alias -> name over every set whose family gives aliases (computed once per set list: the
        studio asks for every slider of every render)."""
        if getattr(self, "_aliases", (None,))[0] != len(self.sets):
            out: dict[str, str] = {}
            for s in self.sets:
                family = getattr(s, "family", None)
                fam = EDIT_FAMILIES.get(family) if family in EDIT_FAMILIES else None
                for k, v in (fam.aliases(s) if fam is not None and fam.aliases is not None else {}).items():
                    out.setdefault(k, v)
            self._aliases = (len(self.sets), out)
        return self._aliases[1]

    def make(self, G: Any, name: str, strength: float, *, layers: str | None = None, keep: Sequence[str] = ()) -> Any:
        """The edit ``name`` at ``strength`` (in its family's units), on ``layers`` where it allows.

        Raises:
            EditError: an unknown name (the message lists the available ones and the closest match),
                or a name its set cannot make as asked.
        """
        aliases = self.aliases()
        variants = [name]
        parts = name.split(":")
        swapped = ":".join(aliases.get(p, p) for p in parts)
        if swapped != name:
            variants.append(swapped)
        for candidate in variants:
            for s in self.sets + self.builtins:
                made = s.make(G, candidate, strength, layers=layers, keep=keep)
                if made is not None:
                    return made
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "none (compute some with `latentshop directions compute`)"
        schemes = "".join(f"; and {n} for {what}" for s in self.builtins for n, what in s.describe())
        raise EditError(f"unknown edit {name!r}.{hint} This model has: {listing}{schemes}")

    def check_names(self, names: Sequence[str], what: str = "edit") -> None:
        """Raise :class:`EditError` for a name no file set knows (e.g. ``--keep`` attributes)."""
        known = set(self.names())
        for n in names:
            if n not in known:
                raise EditError(f"{what} {n!r}: no such edit; this model has {', '.join(self.names()) or 'none'}")
