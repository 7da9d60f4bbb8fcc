"""permessage-deflate negotiation (RFC 7692 section 5 and 7.1), unit by unit:
every parameter on the server and the client, several offers in one header,
declined offers, and every malformed parameter's answer."""
from __future__ import annotations

from typing import Optional

import pytest

from fastsock.websocket.extensions import (
    ClientPerMessageDeflate,
    ExtensionResponseError,
    MalformedOfferError,
    PerMessageDeflate,
    ServerPerMessageDeflate,
)
from fastsock.websocket.handshake import parse_extension_header


def params(text: str) -> list[tuple[str, Optional[str]]]:
    [(name, p)] = parse_extension_header(text)
    assert name == "permessage-deflate"
    return p


def server_accept(offer: str, **kw: object) -> Optional[tuple[str, PerMessageDeflate]]:
    return ServerPerMessageDeflate(**kw).accept(params(offer))  # type: ignore[arg-type]


# ---------------------------------------------------------------- server side

def test_plain_offer_is_accepted_with_our_window_for_sending() -> None:
    result = server_accept("permessage-deflate", server_max_window_bits=11)
    assert result is not None
    answer, ext = result
    assert answer == "permessage-deflate"
    assert ext.local_max_window_bits == 11            # a sender may use a smaller window
    assert ext.remote_max_window_bits == 15           # the client may use any
    assert not ext.local_no_context_takeover and not ext.remote_no_context_takeover


@pytest.mark.parametrize("offer,answer,local_nct,remote_nct", [
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", True, False),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover", False, True),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover", True, True),
])
def test_no_context_takeover_offers(offer: str, answer: str, local_nct: bool,
                                    remote_nct: bool) -> None:
    result = server_accept(offer, client_max_window_bits=None)
    assert result is not None
    assert result[0] == answer
    assert result[1].local_no_context_takeover is local_nct
    assert result[1].remote_no_context_takeover is remote_nct


def test_server_imposes_no_context_takeover_it_was_not_offered() -> None:
    result = server_accept("permessage-deflate", server_no_context_takeover=True,
                           client_no_context_takeover=True)
    assert result is not None
    assert result[0] == ("permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover")
    assert result[1].local_no_context_takeover and result[1].remote_no_context_takeover


@pytest.mark.parametrize("offered,ours,used", [(10, 12, 10), (15, 12, 12), (9, 9, 9), (12, 15, 12)])
def test_server_max_window_bits_offer_is_answered_with_at_most_it(offered: int, ours: int,
                                                                  used: int) -> None:
    result = server_accept(f"permessage-deflate; server_max_window_bits={offered}",
                           server_max_window_bits=ours)
    assert result is not None
    assert result[0] == f"permessage-deflate; server_max_window_bits={used}"
    assert result[1].local_max_window_bits == used


def test_server_max_window_bits_8_is_declined_zlib_cannot_compress_with_it() -> None:
    assert server_accept("permessage-deflate; server_max_window_bits=8") is None


@pytest.mark.parametrize("offer,ours,answered", [
    ("client_max_window_bits", 12, 12),
    ("client_max_window_bits", None, 15),
    ("client_max_window_bits=10", 12, 10),
    ("client_max_window_bits=14", 12, 12),
    ("client_max_window_bits=8", None, 8),     # the client compresses; we inflate with 8
])
def test_client_max_window_bits_with_and_without_value(offer: str, ours: Optional[int],
                                                       answered: int) -> None:
    result = server_accept(f"permessage-deflate; {offer}", client_max_window_bits=ours)
    assert result is not None
    assert result[0] == f"permessage-deflate; client_max_window_bits={answered}"
    assert result[1].remote_max_window_bits == answered


def test_client_max_window_bits_not_offered_is_not_answered() -> None:
    result = server_accept("permessage-deflate", client_max_window_bits=9)
    assert result is not None
    assert "client_max_window_bits" not in result[0]
    assert result[1].remote_max_window_bits == 15


@pytest.mark.parametrize("offer", [
    "permessage-deflate; foo",                                  # unknown parameter
    "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover=1",         # a flag with a value
    "permessage-deflate; client_no_context_takeover=true",
    "permessage-deflate; server_max_window_bits",               # needs a value
    "permessage-deflate; server_max_window_bits=7",             # out of range
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",           # leading zero
    "permessage-deflate; client_max_window_bits=+9",
    "permessage-deflate; server_max_window_bits=ten",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",   # repeated
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
])
def test_invalid_but_well_formed_offers_are_declined(offer: str) -> None:
    assert server_accept(offer) is None


@pytest.mark.parametrize("offer", [
    "permessage-deflate; =10",                          # no name
    "permessage-deflate; server_max_window_bits=",      # empty value
    'permessage-deflate; server_max_window_bits="1 0"',  # not a token
    "permessage-deflate; client@window",                # not a token
])
def test_malformed_offer_raises_the_400_error(offer: str) -> None:
    with pytest.raises(MalformedOfferError) as info:
        server_accept(offer)
    assert info.value.status == 400


def test_quoted_value_is_accepted_as_its_token() -> None:
    result = server_accept('permessage-deflate; client_max_window_bits="10"')
    assert result is not None and result[1].remote_max_window_bits == 10


def test_several_offers_first_acceptable_wins_in_the_server_glue() -> None:
    # The glue (server_handshake._negotiate) asks the factory offer by offer
    # and keeps the first it accepts: check that order here directly.
    header = ("permessage-deflate; server_max_window_bits=8, "
              "permessage-deflate; foo, "
              "permessage-deflate; server_max_window_bits=10; client_no_context_takeover, "
              "permessage-deflate")
    factory = ServerPerMessageDeflate()
    chosen = None
    for name, p in parse_extension_header(header):
        chosen = factory.accept(p)
        if chosen is not None:
            break
    assert chosen is not None
    assert chosen[0] == ("permessage-deflate; client_no_context_takeover; "
                         "server_max_window_bits=10")


@pytest.mark.parametrize("kw", [
    dict(server_max_window_bits=8), dict(server_max_window_bits=16),
    dict(client_max_window_bits=8), dict(mem_level=0), dict(mem_level=10),
    dict(level=10), dict(threshold=-1),
])
def test_server_factory_rejects_impossible_settings(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(**kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- client side

@pytest.mark.parametrize("kw,offer", [
    ({}, "permessage-deflate; client_max_window_bits"),
    (dict(client_max_window_bits=None), "permessage-deflate"),
    (dict(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=10"),
    (dict(server_no_context_takeover=True, client_no_context_takeover=True,
          server_max_window_bits=11, client_max_window_bits=None),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=11"),
])
def test_client_offers(kw: dict[str, object], offer: str) -> None:
    assert ClientPerMessageDeflate(**kw).offer() == offer  # type: ignore[arg-type]


def test_client_accepts_a_plain_answer() -> None:
    ext = ClientPerMessageDeflate(compress_max_window_bits=13).accept(params("permessage-deflate"))
    assert ext.local_max_window_bits == 13 and ext.remote_max_window_bits == 15
    assert not ext.local_no_context_takeover and not ext.remote_no_context_takeover


def test_client_follows_every_parameter_of_the_answer() -> None:
    ext = ClientPerMessageDeflate().accept(params(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=9"))
    assert ext.remote_no_context_takeover and ext.local_no_context_takeover
    assert ext.remote_max_window_bits == 10 and ext.local_max_window_bits == 9


def test_client_uses_the_window_it_offered() -> None:
    ext = ClientPerMessageDeflate(client_max_window_bits=10,
                                  compress_max_window_bits=15).accept(params("permessage-deflate"))
    assert ext.local_max_window_bits == 10


@pytest.mark.parametrize("kw,answer", [
    ({}, "permessage-deflate; foo"),                                    # unknown
    ({}, "permessage-deflate; server_no_context_takeover=1"),
    ({}, "permessage-deflate; server_max_window_bits"),                 # needs a value
    ({}, "permessage-deflate; client_max_window_bits"),                 # in an answer too
    ({}, "permessage-deflate; server_max_window_bits=16"),
    ({}, "permessage-deflate; client_max_window_bits=7"),
    ({}, "permessage-deflate; client_max_window_bits=8"),               # zlib can't compress
    ({}, "permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
    ({}, "permessage-deflate; =1"),                                     # malformed
    ({}, 'permessage-deflate; server_max_window_bits="1 0"'),
    (dict(client_max_window_bits=None), "permessage-deflate; client_max_window_bits=10"),
    (dict(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=12"),
    (dict(server_max_window_bits=10), "permessage-deflate"),            # must be answered
    (dict(server_max_window_bits=10), "permessage-deflate; server_max_window_bits=11"),
    (dict(server_no_context_takeover=True), "permessage-deflate"),      # must be granted
])
def test_client_fails_the_handshake_on_an_invalid_answer(kw: dict[str, object],
                                                          answer: str) -> None:
    with pytest.raises(ExtensionResponseError) as info:
        ClientPerMessageDeflate(**kw).accept(params(answer))  # type: ignore[arg-type]
    assert info.value.status == 101


@pytest.mark.parametrize("offer", ["permessage-deflate;; server_no_context_takeover",
                                   "permessage-deflate; client_max_window_bits;"])
def test_empty_parameter_is_malformed(offer: str) -> None:
    with pytest.raises(MalformedOfferError):
        ServerPerMessageDeflate().accept(params(offer))
    with pytest.raises(ExtensionResponseError):
        ClientPerMessageDeflate().accept(params(offer.replace("client_max_window_bits", "server_no_context_takeover")))
