from pipeline.coherence import coherence, repetition


def test_plain_answer_is_coherent():
    flags = coherence("Paris is the capital of France. It lies on the Seine river.")
    assert not flags.degenerate and not flags.empty and flags.repetition == 0.0


def test_loops_repeated_characters_and_symbol_soup_are_degenerate():
    assert coherence("I will help you. " * 20).degenerate
    assert coherence("Sure" + "!" * 40).degenerate
    assert coherence("#$%^&*()_+{}|:<>?~`-=[]\\;',./ 12 34").degenerate


def test_empty_answer_is_flagged_empty_not_degenerate():
    flags = coherence("   \n ")
    assert flags.empty and not flags.degenerate


def test_repetition_share_by_hand():
    # words a b c a b c -> 3-grams abc bca cab abc: one of four repeats
    assert repetition("a b c a b c") == 0.25
