"""torchvision.ops stand-in: only what timm's model code imports."""
