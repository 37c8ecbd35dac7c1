"""RoI pooling: the original's pool / align / crop modes on one level (roi_pool.py), their
deformable variant (deform_roi_pool.py), the level choice of a pyramid (pyramid_roi_pool.py),
and RoIAlign with a gradient for its boxes (roi_align_grad.py)."""
