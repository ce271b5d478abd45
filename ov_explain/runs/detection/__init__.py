"""Detection audits' pure parts: datasets with boxes (COCO, YOLO folders) and the per-box case rules."""
