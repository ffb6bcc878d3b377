"""The streaming recorder (``goldrl record``): every BingX market channel, stored without loss."""
