"""Evaluation metrics: full-ranking top-K Recall/NDCG/Precision (DDP-ready)."""

from slifmr.metrics.ranking import RankingMetrics, hits_from_topk, rank_topk

__all__ = ["RankingMetrics", "hits_from_topk", "rank_topk"]
