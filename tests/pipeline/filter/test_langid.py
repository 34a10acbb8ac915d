import pytest

from crawlmill.pipeline.filter.langid import FastTextLanguageId, normalize_label


@pytest.fixture(scope="module")
def lid(lid_model_path):
    return FastTextLanguageId(lid_model_path)


def test_english_and_chinese_multiline_text(lid):
    lang, score = lid.predict("The council met on Tuesday.\nIt approved the new library budget.\n")
    assert lang == "en" and score > 0.8
    lang, score = lid.predict("今天上午，市政府召开新闻发布会。\n会议介绍了新图书馆的建设进展。")
    assert lang == "zh" and score > 0.8


def test_default_model_is_the_packaged_lid176(lid_model_path):
    assert FastTextLanguageId().model_path == lid_model_path


def test_labels_normalised_from_lid176_and_glotlid():
    assert normalize_label("__label__zh") == "zh"
    assert normalize_label("__label__cmn_Hani") == "zh"
    assert normalize_label("__label__eng_Latn") == "en"
    assert normalize_label("__label__yue_Hani") == "yue"


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FastTextLanguageId(tmp_path / "lid.bin")
