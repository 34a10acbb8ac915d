from datatrove.utils.word_tokenizers import WordTokenizer

from crawlmill.pipeline.filter.words import JiebaWordTokenizer, LastTextMemo, RegexWordTokenizer, word_tokenizer


def test_jieba_segments_chinese_into_words_without_whitespace_tokens():
    words = JiebaWordTokenizer().word_tokenize("北京大学的学生 在图书馆里读书。")
    assert "北京大学" in words and "图书馆" in words and " " not in words
    assert len(words) < len("北京大学的学生在图书馆里读书。")  # words, not characters


def test_chinese_sentences_end_at_chinese_punctuation_quotes_and_newlines():
    tok = JiebaWordTokenizer()
    text = "他说：“我们走吧！”大家都同意了。真的吗？\n标题一行\n最后一句没有句号"
    assert tok.sent_tokenize(text) == ["他说：“我们走吧！”", "大家都同意了。", "真的吗？", "标题一行", "最后一句没有句号"]


def test_chinese_sentences_end_at_the_full_stops_of_technical_writing():
    tok = JiebaWordTokenizer()
    text = "本文提出了一种方法．准确率达到95.2%,比v2.3.1版本高.Zhang et al.的方法见Fig. 3.该方法2009年增长８．８％．采用LSTM. 结果良好."
    assert tok.sent_tokenize(text) == [
        "本文提出了一种方法．",  # full-width stop
        "准确率达到95.2%,比v2.3.1版本高.",  # not at decimals or version strings; after Chinese
        "Zhang et al.的方法见Fig. 3.",  # not after abbreviations; after a digit only before Chinese
        "该方法2009年增长８．８％．",  # not at a full-width decimal point
        "采用LSTM.",
        "结果良好.",
    ]
    assert tok.sent_tokenize("访问www.example.org.cn获取e.g.，数据") == ["访问www.example.org.cn获取e.g.，数据"]


class Counting(WordTokenizer):
    def __init__(self) -> None:
        super().__init__("en")
        self.calls = 0

    def word_tokenize(self, text):
        self.calls += 1
        return text.split()

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(0, len(text))]


def test_memo_tokenizes_one_document_once_and_lowercases():
    inner = Counting()
    memo = LastTextMemo(inner)
    doc = "The Cheap flights cheap FLIGHTS"
    assert memo.word_tokenize(doc) == ["the", "cheap", "flights", "cheap", "flights"]
    memo.word_tokenize(doc)
    assert inner.calls == 1
    memo.word_tokenize("another text")
    assert inner.calls == 2


def test_word_tokenizer_per_language():
    assert isinstance(word_tokenizer("zh").inner, JiebaWordTokenizer)
    assert isinstance(word_tokenizer("en").inner, RegexWordTokenizer)
    assert word_tokenizer("en").word_tokenize("Hello, world!") == ["hello", ",", "world", "!"]


def test_regex_english_words_and_sentences():
    tok = RegexWordTokenizer()
    assert tok.word_tokenize("It's 3.14, e-mail (U.S.)!") == ["It's", "3.14", ",", "e-mail", "(", "U.S", ".", ")", "!"]
    assert tok.sent_tokenize('He left. "Why?" she asked.\nHeading\nLast one') == ["He left.", '"Why?"', "she asked.", "Heading", "Last one"]


def test_regex_english_tokenizer_makes_the_same_filter_decisions_as_datatrove_spacy(shared_data):
    """Why English uses RegexWordTokenizer: same decisions as datatrove's spaCy tokenizer, much faster."""
    import json

    from datatrove.utils.word_tokenizers import load_word_tokenizer

    from crawlmill.pipeline.filter.config import FilterConfig
    from crawlmill.pipeline.filter.rules import RuleChain
    from tests.conftest import REPO

    articles = [json.loads(line)["text"] for line in (shared_data / "text/en/wikitext-2-valid.articles.jsonl").read_text().splitlines()[:15]]
    plays = (shared_data / "text/en/tinyshakespeare.txt").read_text().split("\n\n")
    plays = ["\n\n".join(plays[i : i + 12]) for i in range(0, 360, 12)]
    junk = [json.loads(line)["text"] for line in (REPO / "tests/fixtures/filter_junk.jsonl").read_text().splitlines() if '"lang": "en"' in line]
    rules = FilterConfig().rules_for("en")
    ours = RuleChain("en", rules)
    spacy = RuleChain("en", rules, tokenizer=LastTextMemo(load_word_tokenizer("en")))
    docs = articles + plays + junk
    same = sum((ours.first_failure(d) is None) == (spacy.first_failure(d) is None) for d in docs)
    assert same >= 0.98 * len(docs)
