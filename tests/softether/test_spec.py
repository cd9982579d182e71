"""Spec validation: passwords vpncmd would misread are refused, without echoing them."""

from __future__ import annotations

import pytest

from softether.spec import User


@pytest.mark.parametrize("password", ["", "-secret1", "/secret1", "sec ret", 'sec"ret'])
def test_spec_refuses_a_password_vpncmd_would_misread_without_echoing_it(password: str) -> None:
    with pytest.raises(ValueError) as err:
        User(name="a", password=password)  # type: ignore[arg-type]
    assert "must be non-empty, not start with / or -" in str(err.value)
    assert not password or password not in str(err.value)


def test_spec_accepts_a_generated_password() -> None:
    assert User(name="a", password="Xy12abCD90").password.get_secret_value() == "Xy12abCD90"  # type: ignore[arg-type]
