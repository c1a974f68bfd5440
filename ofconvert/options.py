"""Options objects taken together with keyword overrides: ``f(x, options=None, **settings)``
where ``options`` is a frozen dataclass and ``settings`` replace some of its fields
(how ``export`` and ``validate`` keep their keyword calls under the 8-parameter rule)."""
import dataclasses

from .errors import OfconvertError


def option_names(cls):
    """The fields a caller may set on the options dataclass ``cls``, in order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def options_with(cls, options, settings, what):
    """``options`` (an instance of the frozen dataclass ``cls``; None: its defaults)
    with the fields named in ``settings`` replaced (``dataclasses.replace``).
    An unknown name: one-line TypeError naming it and the known ones, as Python's own
    (``what``: the call or mapping named, e.g. ``"export()"``); ``options`` of another
    type: one-line OfconvertError."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise OfconvertError(f"{what}: options must be an ofconvert.{cls.__name__}, "
                             f"got {type(options).__name__} {options!r:.60}")
    if not settings:
        return options
    check_keywords(settings, option_names(cls), what)
    return dataclasses.replace(options, **settings)


def check_keywords(given, known, what):
    """One-line TypeError, worded as Python's own, when ``given`` (keyword arguments)
    names one that is not in ``known``; ``what``: the call, e.g. ``"produce()"``."""
    unknown = [k for k in given if k not in known]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        arg = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
        raise TypeError(f"{what} got {arg} {names} (known: {', '.join(known)})")
