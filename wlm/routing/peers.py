"""Which peer box answers a model several boxes have: the decision, and nothing else.

A peer is another wlm (``WLM_PEERS``); its local models are polled in the background
(:mod:`wlm.providers.peer`) and each box's view of one model is a :class:`Candidate`.
:func:`rank` orders the boxes that have the model, best first:

1. boxes that answer (the last poll reached them) and are not cooling down
   (``WLM_COOLDOWN_*``), before the rest;
2. then where the model is loaded (``ready``), before where it is loading
   (``starting``), before where it would have to be loaded;
3. then the least busy: the requests this wlm has in flight to that box plus what
   the box reports queued;
4. then by name, so that equal boxes are chosen the same way every time.

The request path tries the first and fails over to the next (a box killed mid-run
costs one request its retries on that box, then the box is skipped until it answers
again). A box that is down or cooling stays in the ranking, last: when no other box
has the model, the client gets that box's error, not "no such model".

>>> rank([Candidate("box2", "stopped"), Candidate("box3", "ready")])
('box3', 'box2')
>>> rank([Candidate("box2", "ready", in_flight=3), Candidate("box3", "ready", in_flight=1)])
('box3', 'box2')
>>> rank([Candidate("box2", "ready", up=False), Candidate("box3", "stopped")])
('box3', 'box2')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from attrs import frozen

__all__ = ["LOADED", "LOADING", "Candidate", "PeerIndex", "rank"]

# The states a wlm reports for its local models (GET /v1/models, "state").
LOADED = "ready"
LOADING = "starting"
_STATE_ORDER = {LOADED: 0, LOADING: 1}


@frozen
class Candidate:
    """One box that has the model, as this wlm sees it now."""

    peer: str  # the peer's name (WLM_PEERS)
    state: str  # the model's state there: ready, starting, stopped, stopping, failed
    up: bool = True  # its last poll answered
    cooling: bool = False  # this wlm's cooldowns skip it for now
    in_flight: int = 0  # requests this wlm has open to that box
    queued: int = 0  # requests the box says wait there (0 when it does not say)


def _key(candidate: Candidate) -> tuple[bool, int, int, str]:
    return (
        not candidate.up or candidate.cooling,
        _STATE_ORDER.get(candidate.state, 2),
        candidate.in_flight + candidate.queued,
        candidate.peer,
    )


def rank(candidates: Iterable[Candidate]) -> tuple[str, ...]:
    """The peers' names, best first (the module docstring has the order)."""
    return tuple(candidate.peer for candidate in sorted(candidates, key=_key))


class PeerIndex(Protocol):
    """What the router needs of the peers: their names (``<name>/<id>`` prefixes), the
    model ids any of them has, and the boxes to try for one, best first."""

    @property
    def names(self) -> frozenset[str]: ...

    def model_ids(self) -> frozenset[str]:
        """Every id some peer lists (a new set object whenever it changes)."""
        ...

    def order(self, model_id: str) -> tuple[str, ...]:
        """The provider names (``peer:<name>``) of the boxes that have ``model_id``,
        best first; empty when none has it."""
        ...
