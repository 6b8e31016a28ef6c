"""The shared generation engine: options, stop strings, token counting, streaming."""

import pytest

from vlmzoo.engine.generation import GenerationOptions, TextStream, new_token_count, run_in_thread, trim_stop
from vlmzoo.errors import InputError


def test_options_default_to_greedy_and_clear_checkpoint_sampling_defaults():
    kw = GenerationOptions.from_kwargs({}).generate_kwargs()
    assert kw["do_sample"] is False and kw["max_new_tokens"] == 64
    assert kw["temperature"] is None and kw["top_p"] is None and kw["top_k"] is None


def test_temperature_turns_sampling_on():
    kw = GenerationOptions.from_kwargs({"temperature": 0.7, "top_p": 0.9, "seed": 1}).generate_kwargs()
    assert kw["do_sample"] is True and kw["temperature"] == 0.7 and kw["top_p"] == 0.9
    assert "seed" not in kw  # seeding happens around generate, not inside it


@pytest.mark.parametrize("bad,match", [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 10**6}, "max_new_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"num_beams": 0}, "num_beams"),
    ({"stop": [""]}, "stop"),
    ({"colour": "red"}, r"unknown generation option\(s\) \['colour'\]"),
])
def test_bad_options_are_named(bad, match):
    with pytest.raises(InputError, match=match):
        GenerationOptions.from_kwargs(bad)


def test_stop_accepts_a_string_or_a_list():
    assert GenerationOptions.from_kwargs({"stop": "\n"}).stop == ("\n",)
    assert GenerationOptions.from_kwargs({"stop": ["a", "b"]}).stop == ("a", "b")


def test_trim_stop_cuts_at_the_earliest_stop():
    assert trim_stop("one. two\nthree", (".", "\n")) == ("one", True)
    assert trim_stop("no stop here", ("###",)) == ("no stop here", False)
    assert trim_stop("x", ()) == ("x", False)


def test_new_token_count():
    assert new_token_count([5, 6, 2, 0, 0], pad_id=0, eos_ids={2}) == (3, "stop")
    assert new_token_count([5, 6, 7], pad_id=0, eos_ids=2) == (3, "length")
    assert new_token_count([5, 6, 0, 0], pad_id=0, eos_ids=[2]) == (2, "length")  # finished early in a batch
    assert new_token_count([5, 2, 2], pad_id=2, eos_ids={2}) == (2, "stop")  # pad == eos


def _stream_of(pieces, stop=()):
    vocab = {i: p for i, p in enumerate(pieces)}
    stream = TextStream(lambda ids: "".join(vocab[i] for i in ids), stop)

    class Result:
        text = ""

    def work():
        for i in range(len(pieces)):
            stream.push([i])
            if stream.stopped:
                break
        Result.text = trim_stop("".join(pieces), stop)[0].strip()  # as answers are
        return Result

    return run_in_thread(stream, work)


def test_stream_yields_pieces_that_add_up():
    stream = _stream_of(["Hel", "lo", " wor", "ld"])
    assert "".join(stream) == "Hello world" and stream.result.text == "Hello world"


def test_stream_joins_to_the_stripped_answer_and_keeps_inner_whitespace():
    pieces = [" ", " Hel", "lo ", "\n", "world", " ", "\n"]
    seen = []
    stream = _stream_of(pieces)
    for p in stream:
        seen.append(p)
    assert "".join(seen) == "Hello \nworld" == stream.result.text
    assert not seen[0].startswith(" ") and not seen[-1].endswith((" ", "\n"))


def test_stream_never_shows_a_stop_string():
    stream = _stream_of(["a", "b", "#", "#", "#", "c"], stop=("###",))
    pieces = list(stream)
    assert "".join(pieces) == "ab" and all("#" not in p for p in pieces)


def test_stream_waits_for_whole_characters():
    # the second token holds half of a UTF-8 "é": decoding shows a replacement character
    decoded = {1: "caf", 2: "caf\ufffd", 3: "café!"}
    stream = TextStream(lambda ids: decoded[len(ids)])

    class Result:
        text = "café!"

    def work():
        for i in range(3):
            stream.push([i])
        return Result

    assert list(run_in_thread(stream, work)) == ["caf", "é!"]


def test_stream_reraises_errors_in_the_consumer():
    stream = TextStream(lambda ids: "")

    def boom():
        raise RuntimeError("generate failed")

    run_in_thread(stream, boom)
    with pytest.raises(RuntimeError, match="generate failed"):
        list(stream)


def test_a_cancelled_stream_stops_generation_at_the_next_token(tiny_chat):
    import vlmzoo
    from vlmzoo.engine.generation import StreamCancelled

    model = vlmzoo.load(tiny_chat["qwen2_vl"])
    chat = [{"role": "user", "content": "Tell me a long story."}]
    assert model.ask(messages=chat, max_new_tokens=200).num_tokens == 200  # left alone it runs to the limit
    stream = model.ask(messages=chat, stream=True, max_new_tokens=200)
    pieces = iter(stream)
    next(pieces)
    stream.cancel()
    with pytest.raises(StreamCancelled):
        list(pieces)
    assert stream.result is None
    assert len(stream._ids) < 200  # tokens pushed before generate ended
