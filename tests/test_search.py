"""Parsing the search box."""

import pytest

from hotapp.search import Search, SearchError, candidates


def test_it_splits_key_value_terms_and_free_text():
    search = Search.parse(
        'order_id:42 customer.email:a@b.c "card declined" timeout note:"two words"'
    )

    assert search.pairs == (
        (("order_id",), "42"),
        (("customer", "email"), "a@b.c"),
        (("note",), "two words"),
    )
    assert search.words == ("card declined", "timeout")


def test_an_empty_box_is_no_search():
    assert not Search.parse("   ")


def test_a_number_may_be_stored_as_a_number_or_a_string():
    assert candidates("42") == ["42", 42]
    assert candidates("true") == ["true", True]
    assert candidates("a@b.c") == ["a@b.c"]


@pytest.mark.parametrize(
    "text", ['"open', "k:", ":v", "ab", "a..b:1", " ".join(f"w{i}xx" for i in range(9))]
)
def test_malformed_searches_raise_a_readable_error(text):
    with pytest.raises(SearchError):
        Search.parse(text)
