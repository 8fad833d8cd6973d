"""The caption noun-phrase rule behind ``queries: caption_nouns`` (:mod:`kaleido.latents.nouns`)."""

from __future__ import annotations

import pytest

from kaleido.latents.nouns import caption_nouns


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Dog laying on a human's lap", ["dog", "human lap"]),  # the paper's Figure 1 caption
        ("a cat sat on the mat", ["cat", "mat"]),  # the paper's Figure 5 prompt
        ("<PERSON> attends the premiere of the movie", ["person", "premiere", "movie"]),  # CC12M's name placeholder
        ("Stock Photo - beautiful young woman with long hair, isolated on white background",
         ["young woman", "long hair", "white background"]),
        ("Vector illustration of a red car and two blue bicycles.", ["red car", "blue bicycles"]),
        ("A man wearing a black T-shirt and running shoes", ["man", "black t-shirt", "running shoes"]),
        ("the living room of a modern house with wooden floors", ["living room", "modern house", "wooden floors"]),
        ("Crème brûlée, 3 spoons & a napkin", ["creme brulee", "spoons", "napkin"]),
        ("a ring on a wedding cake decorated with flowers", ["ring", "wedding cake", "flowers"]),
    ],
)
def test_noun_phrases_of_captions(caption, expected):
    assert caption_nouns(caption) == expected


@pytest.mark.parametrize("caption", ["Here it is!", "", "   ", "2019", "so very beautiful", "?!"])
def test_a_caption_without_nouns_gives_no_query(caption):
    assert caption_nouns(caption) == []


def test_phrases_are_distinct_capped_and_short():
    caption = "a dog, a cat, a dog, a bird, a fish, a horse"
    assert caption_nouns(caption) == ["dog", "cat", "bird", "fish", "horse"]
    assert caption_nouns(caption, max_queries=2) == ["dog", "cat"]
    assert caption_nouns("a big red wooden barn", max_words=1) == ["barn"]
    assert caption_nouns("a big red wooden barn", max_words=3) == ["red wooden barn"]
    assert caption_nouns("a big red wooden barn", max_words=9) == ["big red wooden barn"]
    with pytest.raises(ValueError, match="max_queries=0"):
        caption_nouns("a dog", max_queries=0)


def test_names_fit_the_latent_formats():
    """Every phrase is a name the bbox / blob parser accepts: lower case, starting with a letter."""
    from kaleido.latents import formats as fmt

    for phrase in caption_nouns("Mom's café: 2 croissants, an espresso & the New-York Times!", max_queries=20):
        assert fmt.parse_bbox(f"{phrase} (0, 0, 10, 10)", [phrase])[0].name == phrase
