"""The Salt compatibility helper: the same answers on Salt 3006 and 3008."""

import pytest
import salt.version
from cryptography.hazmat.primitives import serialization

import netlab_saltcompat as compat


@pytest.mark.parametrize("text, expected", [
    ("3006.29", (3006, 29)), ("3008.3", (3008, 3)), ("3006", (3006, 0)),
    ("3008.1rc1", (3008, 1)), (" 3006.9 ", (3006, 9)),
    ("latest", None), ("3006.x", None), ("", None), ("3006.29.1", None),
])
def test_version_tuple(text, expected):
    assert compat.version_tuple(text) == expected


@pytest.mark.parametrize("minion, master", [
    ("3006.29", "3006.29"), ("3006.1", "3006.29"), ("3006.29", "3008.3"),
    ("3008.3", "3008.3"), ("3008.1", "3008.3"),
])
def test_supported_minion_versions(minion, master):
    assert compat.minion_version_problem(minion, master) is None


def test_a_minion_newer_than_its_master_is_refused_with_the_fix():
    problem = compat.minion_version_problem("3008.3", "3006.29")
    assert problem == ("salt-minion 3008.3 would be newer than the master's Salt 3006.29 "
                       "(Salt supports minions of the master's version or older): set it "
                       "to 3006.29 or older, or upgrade the master")
    assert "newer" in compat.minion_version_problem("3006.30", "3006.29")


@pytest.mark.parametrize("minion, says", [
    ("3007.1", "Salt 3007.1 is not supported by netlab; use a 3006.x or 3008.x release"),
    ("3005.1", "Salt 3005.1 is not supported by netlab; use a 3006.x or 3008.x release"),
    ("latest", "'latest' is not a Salt release (e.g. '3008.3' or '3006.29')"),
])
def test_unsupported_or_malformed_versions(minion, says):
    assert compat.minion_version_problem(minion, "3008.3") == says


def test_master_version_defaults_to_the_running_salt():
    running = str(salt.version.__version__)
    assert compat.salt_version() == running
    assert compat.minion_version_problem(running) is None
    major, minor = compat.version_tuple(running)
    assert "newer" in compat.minion_version_problem("{}.{}".format(major, minor + 1))


def test_gen_keys_gives_a_matching_pem_pair():
    priv_pem, pub_pem = compat.gen_keys(2048)
    assert isinstance(priv_pem, str) and isinstance(pub_pem, str)
    assert priv_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pub_pem.startswith("-----BEGIN PUBLIC KEY-----")
    key = serialization.load_pem_private_key(priv_pem.encode(), password=None)
    assert key.key_size == 2048
    mine = key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert mine.decode() == pub_pem
    assert compat.gen_keys(2048)[0] != priv_pem

