"""KD baselines, one small module per method, each registered in `METHODS` by name.

    vanilla     Hinton et al. 2015: soft cross-entropy on the cached teacher logits + CE
    probes      AdaBERT's probes KD (Chen et al. 2020) on a fixed student
    bilstm      Tang et al. 2019: logit MSE into a BiLSTM on the transfer set
    pkd-skip    BERT-PKD (Sun et al. 2019), every ⌊L/S⌋-th teacher layer's [CLS]
    pkd-last    BERT-PKD, the teacher's top layers' [CLS]
    distilbert  Sanh et al. 2019: soft CE + cosine on the last hidden states + CE
    tinybert    Jiao et al. 2020: embedding, hidden and attention MSE, then prediction KD
    minilm      Wang et al. 2020: last-layer attention and value-relation KL + CE
    theseus     Xu et al. 2020: progressive module replacing, then successor finetuning

`nas.train.distill.run_distill` trains any of them through `nas.train.loop.train_loop`.
"""

from kd.methods import bilstm, distilbert, minilm, pkd, probes, theseus, tinybert, vanilla  # noqa: F401  (they register)
from kd.methods.base import Context, Method, parse_layer_map
from kd.methods.registry import METHODS, method_class, register

__all__ = ["METHODS", "Context", "Method", "method_class", "parse_layer_map", "register"]
